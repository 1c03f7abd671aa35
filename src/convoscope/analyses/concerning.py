"""`analyze concerning`: clusters ranked by mean concerning score (1-5) and by share of conversations
rated 4-5, with counts and a 95% Wilson interval on the share. From the published aggregates only.

The concerning facet is an LLM judgement; extractive runs do not have it (the aggregates say so in
`facets_unavailable`), and the analysis says that instead of ranking anything.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from convoscope.analyses.common import Run, label, pct, wilson
from convoscope.text import markup_safe

UNAVAILABLE_DEFAULT = "needs an LLM (run with --llm)"


def concern_unavailable(run: Run) -> str | None:
    """Why the run has no concerning scores, or None when it has them."""
    reason = (run.aggregates.get("facets_unavailable") or {}).get("concerning")
    if reason:
        return str(reason)
    if run.facet_kind("concerning") is None:
        return UNAVAILABLE_DEFAULT
    return None


def concern_stats(c: dict[str, Any]) -> dict[str, Any] | None:
    f = c["facets"].get("concerning")
    if not f:
        return None
    hist = {str(k): int(v) for k, v in f.get("hist", {}).items()}
    n = int(f.get("n") or sum(hist.values()))
    high = hist.get("4", 0) + hist.get("5", 0)
    return {"mean": float(f["mean"]), "n": n, "high": high, "high_share": high / n if n else 0.0,
            "high_share_ci95": list(wilson(high, n)), "hist": hist}


def concerning(run: Run, level: int | None = None, top: int = 15, min_conversations: int = 0) -> dict[str, Any]:
    reason = concern_unavailable(run)
    if reason:
        return {"analysis": "concerning", "available": False, "reason": f"concerning scores {reason}"}
    level = run.check_level(level)
    rows = []
    for c in run.clusters(level):
        s = concern_stats(c)
        if s is None or s["n"] < min_conversations:
            continue
        rows.append({"id": c["id"], "name": c["name"], "level": level, "size": c["size"], "accounts": c["accounts"], **s})
    by_mean = sorted(rows, key=lambda r: (-r["mean"], -r["n"]))[:top]
    by_high = sorted(rows, key=lambda r: (-r["high_share"], -r["high"]))[:top]
    total_n = sum(r["n"] for r in rows)
    total_high = sum(r["high"] for r in rows)
    return {"analysis": "concerning", "available": True, "level": level, "clusters": len(rows),
            "overall": {"n": total_n, "high": total_high, "high_share": total_high / total_n if total_n else 0.0,
                        "mean": sum(r["mean"] * r["n"] for r in rows) / total_n if total_n else None},
            "by_mean": by_mean, "by_high_share": by_high}


def print_unavailable(result: dict[str, Any], console: Console) -> None:
    console.print(f"[yellow]Concern analysis unavailable:[/] {markup_safe(result['reason'])}. "
                  "Concerning scores are an LLM judgement; run the pipeline with --llm to get them.")


def print_concerning(result: dict[str, Any], console: Console) -> None:
    if not result["available"]:
        print_unavailable(result, console)
        return
    o = result["overall"]
    for key, title in (("by_mean", "by mean concerning score"), ("by_high_share", "by share of conversations rated 4-5")):
        table = Table(title=f"Concerning (level {result['level']}), {title}")
        table.add_column("#", justify="right")
        table.add_column("cluster")
        table.add_column("conversations", justify="right")
        table.add_column("mean (1-5)", justify="right")
        table.add_column("rated 4-5", justify="right")
        table.add_column("share 4-5 [95% CI]", justify="right")
        for i, r in enumerate(result[key], 1):
            ci = r["high_share_ci95"]
            table.add_row(str(i), label(r), f"{r['n']:,}", f"{r['mean']:.2f}", f"{r['high']:,}", f"{pct(r['high_share'])} [{pct(ci[0])}–{pct(ci[1])}]")
        console.print(table)
    if o["n"]:
        console.print(f"[dim]Overall: mean {o['mean']:.2f}, {o['high']:,} of {o['n']:,} conversations ({pct(o['high_share'])}) rated 4-5.[/]")
