"""`analyze languages`: for each language with enough data, the clusters where it is most over- and
under-represented, by the paper's ratio (the cluster's share of language L / L's overall share).

From the per-cluster `language` breakdowns in the published aggregates, at one level (default: the
base level). Overall shares are taken over the published clusters of that level.

Rules (so tiny counts don't produce wild ratios):
- a language is analysed when it has at least `min_language` conversations in those clusters;
- over-representation needs at least `min_support` conversations of L in the cluster;
- under-representation needs an expected count (L's overall share x cluster size) of at least
  `min_support`.
- the aggregates merge a language held by fewer than `min_accounts` accounts in a cluster into
  "other", so a language missing from a cluster's breakdown may still be in its "other" count. For
  under-representation the ratio is therefore computed from an upper bound on L's count (L's count
  if listed, else the cluster's "other" count, else 0), so it is never overstated; it is printed with
  "≤" only when it is a bound (the language was merged into "other").
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from convoscope.analyses.common import Run, label, pct
from convoscope.text import markup_safe

SKIP = {"other", "unknown", "Unknown", ""}


def languages(run: Run, level: int | None = None, min_support: int = 10, min_language: int = 30, top: int = 3) -> dict[str, Any]:
    level = run.check_level(level)
    clusters = [c for c in run.clusters(level) if c["facets"].get("language")]
    totals: dict[str, int] = {}
    grand = 0
    for c in clusters:
        for lang, n in c["facets"]["language"].items():
            grand += n
            if lang not in SKIP:
                totals[lang] = totals.get(lang, 0) + n
    out_langs = []
    for lang, total in sorted(totals.items(), key=lambda kv: -kv[1]):
        if total < min_language or not grand:
            continue
        overall = total / grand
        over, under = [], []
        for c in clusters:
            breakdown = c["facets"]["language"]
            size = sum(breakdown.values())
            if not size:
                continue
            count = breakdown.get(lang, 0)
            expected = overall * size
            entry = {"id": c["id"], "name": c["name"], "size": size, "count": count, "expected": round(expected, 2)}
            if count >= min_support and count / size > overall:
                over.append({**entry, "share": count / size, "ratio": (count / size) / overall})
            if expected >= min_support:
                # exact when the language is listed, or when nothing was merged into "other" (then it is 0)
                merged = lang not in breakdown and breakdown.get("other", 0) > 0
                upper = breakdown["other"] if merged else count
                if upper / size < overall:
                    under.append({**entry, "count_upper_bound": upper, "count_is_upper_bound": merged, "share": upper / size,
                                  "ratio": (upper / size) / overall})
        over.sort(key=lambda e: (-e["ratio"], -e["count"]))
        under.sort(key=lambda e: (e["ratio"], -e["expected"]))
        out_langs.append({"language": lang, "conversations": total, "overall_share": overall,
                          "over_represented": over[:top], "under_represented": under[:top]})
    return {"analysis": "languages", "level": level, "clusters": len(clusters), "conversations": grand,
            "rules": {"min_support": min_support, "min_language": min_language,
                      "over": f"at least {min_support} conversations of the language in the cluster",
                      "under": f"expected count (overall share x cluster size) at least {min_support}; count is an upper bound "
                               "(the language's count if listed, else the cluster's 'other' count)"},
            "languages": out_langs}


def print_languages(result: dict[str, Any], console: Console) -> None:
    if not result["languages"]:
        console.print(f"No language has at least {result['rules']['min_language']} conversations in the published clusters of level {result['level']}.")
        return
    table = Table(title=f"Languages by cluster (level {result['level']}; ratio = cluster's share of the language / its overall share)")
    table.add_column("language", style="bold")
    table.add_column("overall", justify="right")
    table.add_column("", justify="center")
    table.add_column("cluster")
    table.add_column("count / size", justify="right")
    table.add_column("share", justify="right")
    table.add_column("ratio", justify="right")
    for lang in result["languages"]:
        name = markup_safe(lang["language"])  # a facet value: data, printed as text
        first = True
        for kind, entries, style in (("over", lang["over_represented"], "green"), ("under", lang["under_represented"], "red")):
            for e in entries:
                count = e.get("count_upper_bound", e["count"])
                bound = "≤" if e.get("count_is_upper_bound") else ""  # merged into "other": at most that many
                table.add_row(name if first else "", f"{lang['conversations']:,} ({pct(lang['overall_share'])})" if first else "",
                              f"[{style}]{kind}[/]", label(e, 50), f"{bound}{count:,} / {e['size']:,}",
                              f"{bound}{pct(e['share'])}", f"{bound}{e['ratio']:.2f}x")
                first = False
        if first:
            table.add_row(name, f"{lang['conversations']:,} ({pct(lang['overall_share'])})", "", "[dim]no cluster passes the support rule[/]", "", "", "")
        table.add_section()
    console.print(table)
    console.print(f"[dim]Support rule: over-represented needs ≥{result['rules']['min_support']} conversations of the language in the cluster; "
                  f"under-represented needs an expected count ≥{result['rules']['min_support']}.[/]")
