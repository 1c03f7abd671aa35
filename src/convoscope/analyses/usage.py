"""`analyze usage`: top-level and second-level clusters with shares of conversations and of accounts,
each with a 95% Wilson score interval. From the published aggregates only.

The interval treats conversations (or accounts) as independent draws from the population the run
samples; conversations of one account are not independent, so for conversation shares it is a lower
bound on the real uncertainty (the account share's interval is the more conservative of the two).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from convoscope.analyses.common import Run, label, pct, wilson


def usage(run: Run, levels: int = 2) -> dict[str, Any]:
    info = run.info
    n_conv = int(info["conversations"])
    n_acc = int(info["accounts"])
    rows = []
    for level in range(min(levels, run.levels)):
        for c in run.clusters(level, include_other=True):
            lo, hi = wilson(c["size"], n_conv)
            row: dict[str, Any] = {
                "id": c["id"], "level": level, "parent": c["parent"], "kind": c["kind"], "name": c["name"],
                "conversations": c["size"], "conversation_share": c["size"] / n_conv if n_conv else 0.0,
                "conversation_share_ci95": [lo, hi],
                "accounts": c["accounts"], "account_share": None, "account_share_ci95": None,
            }
            if c["accounts"] is not None and n_acc:
                row["account_share"] = c["accounts"] / n_acc
                row["account_share_ci95"] = list(wilson(c["accounts"], n_acc))
            rows.append(row)
    return {"analysis": "usage", "conversations": n_conv, "accounts": n_acc, "levels_shown": min(levels, run.levels),
            "interval": "95% Wilson score interval", "clusters": rows, "withheld": run.aggregates.get("withheld")}


def _ci(share: float | None, ci: list[float] | None) -> str:
    if share is None or ci is None:
        return "—"
    return f"{pct(share)} [{pct(ci[0])}–{pct(ci[1])}]"


def print_usage(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Usage: {result['conversations']:,} conversations, {result['accounts']:,} accounts (95% Wilson intervals)")
    table.add_column("cluster")
    table.add_column("conversations", justify="right")
    table.add_column("share of conversations", justify="right")
    table.add_column("accounts", justify="right")
    table.add_column("share of accounts", justify="right")
    children: dict[str | None, list[dict]] = {}
    for r in result["clusters"]:
        children.setdefault(r["parent"] if r["level"] else None, []).append(r)

    def add(r: dict, indent: int) -> None:
        name = ("  " * indent) + ("└ " if indent else "") + label(r, 56 - 2 * indent)
        style = "dim" if r["kind"] == "other" else ("bold" if r["level"] == 0 else None)
        table.add_row(name, f"{r['conversations']:,}", _ci(r["conversation_share"], r["conversation_share_ci95"]),
                      "—" if r["accounts"] is None else f"{r['accounts']:,}", _ci(r["account_share"], r["account_share_ci95"]), style=style)
        for child in children.get(r["id"], []):
            add(child, indent + 1)

    for r in children.get(None, []):
        add(r, 0)
    console.print(table)
    w = result.get("withheld") or {}
    if w.get("clusters"):
        console.print(f"[dim]{w['clusters']} clusters ({w['conversations']:,} conversations) withheld by the privacy gates; "
                      "their conversations are in the 'Other (withheld)' rows.[/]")
