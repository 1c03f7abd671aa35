"""`analyze classifier --flag-field F`: compare an existing classifier's flags (a metadata field of the
input) with Clio's concerning scores, per published cluster, from the aggregates only.

- flag rate: the share of a cluster's conversations whose field F is truthy. A category field
  (strings, booleans) counts "true", "1", "yes", "y", "t", "flag", "flagged", "positive" (any case)
  as flagged; missing values ("unknown") and values merged into "other" by the privacy rule are left
  out of the denominator. A numeric field (its aggregates hold a 5-bin histogram) counts values
  outside the bin that starts at 0 as flagged: exact for 0/1 fields.
- concern: mean concerning score (1-5) and share rated 4-5, from the LLM facet.
- Pearson correlation of mean concern vs. flag rate over clusters (the paper reports 0.71).
- likely misses: mean concern >= `concern_high` but flag rate <= `flag_low`;
  likely false alarms: flag rate >= `flag_high` but mean concern <= `concern_low`.
Clusters with fewer than `min_conversations` rated/flag-known conversations are left out.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from convoscope.analyses.common import AnalysisError, Run, label, pct, pearson, wilson
from convoscope.analyses.concerning import concern_stats, concern_unavailable
from convoscope.text import markup_safe

TRUTHY = {"true", "1", "yes", "y", "t", "flag", "flagged", "positive"}
UNKNOWN = {"unknown", "other", ""}


def flag_counts(facet: dict[str, Any] | None, kind: str) -> tuple[int, int] | None:
    """(flagged, known) for one cluster's breakdown of the flag field."""
    if not facet:
        return None
    if kind == "number":
        hist = facet.get("hist") or {}
        if not hist:
            return None
        n = int(facet.get("n") or sum(hist.values()))
        return (n - int(hist.get("0", 0)), n)
    flagged = known = 0
    for value, count in facet.items():
        v = str(value).strip().lower()
        if v in UNKNOWN:
            continue
        known += count
        if v in TRUTHY:
            flagged += count
    return (flagged, known)


def classifier(run: Run, flag_field: str, level: int | None = None, min_conversations: int = 10, concern_high: float = 2.5,
               flag_low: float = 0.1, flag_high: float = 0.5, concern_low: float = 1.5) -> dict[str, Any]:
    name = flag_field if flag_field.startswith("meta.") else f"meta.{flag_field}"
    kind = run.facet_kind(name)
    if kind is None:
        fields = sorted(f["name"][5:] for f in run.aggregates.get("facets", []) if f["name"].startswith("meta."))
        raise AnalysisError(f"metadata field '{name[5:]}' is not in the run's aggregates (fields there: {', '.join(fields) or 'none'}; "
                            "a field with too many distinct values is not aggregated)")
    level = run.check_level(level)
    unavailable = concern_unavailable(run)
    rows = []
    for c in run.clusters(level):
        fc = flag_counts(c["facets"].get(name), kind)
        if fc is None or fc[1] < min_conversations:
            continue
        flagged, known = fc
        row: dict[str, Any] = {"id": c["id"], "name": c["name"], "size": c["size"], "flag_known": known, "flagged": flagged,
                               "flag_rate": flagged / known, "flag_rate_ci95": list(wilson(flagged, known))}
        s = None if unavailable else concern_stats(c)
        if s is not None and s["n"] >= min_conversations:
            row.update({"concern_mean": s["mean"], "concern_n": s["n"], "concern_high_share": s["high_share"]})
        rows.append(row)
    rows.sort(key=lambda r: -r["flag_rate"])
    result: dict[str, Any] = {"analysis": "classifier", "flag_field": name[5:], "level": level, "clusters": rows,
                              "concern_available": unavailable is None}
    if unavailable:
        result.update({"concern_reason": f"concerning scores {unavailable}", "correlation": None, "likely_misses": [], "likely_false_alarms": []})
        return result
    both = [r for r in rows if "concern_mean" in r]
    result["correlation"] = {"pearson_r": pearson([r["concern_mean"] for r in both], [r["flag_rate"] for r in both]), "clusters": len(both),
                             "of": "mean concerning score vs. flag rate, over clusters"}
    result["rules"] = {"likely_miss": f"mean concern >= {concern_high} and flag rate <= {flag_low:.0%}",
                       "likely_false_alarm": f"flag rate >= {flag_high:.0%} and mean concern <= {concern_low}"}
    result["likely_misses"] = sorted((r for r in both if r["concern_mean"] >= concern_high and r["flag_rate"] <= flag_low),
                                     key=lambda r: -r["concern_mean"])
    result["likely_false_alarms"] = sorted((r for r in both if r["flag_rate"] >= flag_high and r["concern_mean"] <= concern_low),
                                           key=lambda r: -r["flag_rate"])
    return result


def print_classifier(result: dict[str, Any], console: Console, top: int = 20) -> None:
    t = Table(title=f"Classifier field '{markup_safe(result['flag_field'])}' vs concern (level {result['level']})")
    t.add_column("cluster")
    t.add_column("flag known", justify="right")
    t.add_column("flagged", justify="right")
    t.add_column("flag rate [95% CI]", justify="right")
    t.add_column("mean concern", justify="right")
    t.add_column("rated 4-5", justify="right")
    t.add_column("", justify="left")
    misses = {r["id"] for r in result["likely_misses"]}
    alarms = {r["id"] for r in result["likely_false_alarms"]}
    for r in result["clusters"][:top] + [r for r in result["clusters"][top:] if r["id"] in misses | alarms]:
        ci = r["flag_rate_ci95"]
        note = "[red]likely miss[/]" if r["id"] in misses else ("[yellow]likely false alarm[/]" if r["id"] in alarms else "")
        t.add_row(label(r, 50), f"{r['flag_known']:,}", f"{r['flagged']:,}", f"{pct(r['flag_rate'])} [{pct(ci[0])}–{pct(ci[1])}]",
                  f"{r['concern_mean']:.2f}" if "concern_mean" in r else "—", pct(r.get("concern_high_share")), note)
    console.print(t)
    if not result["concern_available"]:
        console.print(f"[yellow]Concern unavailable:[/] {markup_safe(result['concern_reason'])}. Flag rates are shown; run the pipeline with --llm "
                      "to compare them with concerning scores.")
        return
    corr = result["correlation"]
    r = corr["pearson_r"]
    console.print(f"Pearson r (mean concern vs flag rate, {corr['clusters']} clusters): " + ("n/a" if r is None else f"[bold]{r:.2f}[/]") + "  (the paper: 0.71)")
    console.print(f"[dim]likely miss: {result['rules']['likely_miss']}; likely false alarm: {result['rules']['likely_false_alarm']}[/]")
