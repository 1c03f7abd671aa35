"""`convoscope report`: the published hierarchy as a tree or as JSON, from the aggregates only."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.tree import Tree

from convoscope.store import RunStore
from convoscope.text import markup_safe
from convoscope.wording import count

NO_ACCOUNT_IDS = "The input has no account ids: the privacy thresholds count conversations, not people."


def run_warnings(run: dict[str, Any]) -> list[str]:
    """Plain-text warnings every output shows with the run (report header, explorer banner).

    `account_ids` is "absent" when the input had no account ids at all, so each conversation counted
    as its own account. Runs made before the key existed lack it: treated as "present".
    """
    return [NO_ACCOUNT_IDS] if run.get("account_ids") == "absent" else []


def guarantee_line(guarantee: dict[str, Any] | None) -> str | None:
    """The privacy guarantee in one plain line (report header; the explorer shows the same object)."""
    if not guarantee:
        return None
    if guarantee.get("mode") == "dp":
        split = ", ".join(f"{q.replace('_', ' ')} {v['share']:.0%}" for q, v in guarantee.get("split", {}).items())
        return (f"differential privacy per {guarantee['unit']}: epsilon {guarantee['epsilon']:g}, delta {guarantee['delta']:g} "
                f"(sizes count at most {guarantee['max_conversations_per_account']} conversations per account; budget: {split})")
    return (f"thresholds (no formal guarantee): clusters and cells need {guarantee.get('min_accounts')} accounts, "
            f"{guarantee.get('min_conversations')} conversations with at most {guarantee.get('max_conversations_per_account')} per account")


def report_json(store: RunStore) -> dict[str, Any]:
    agg = store.read_json("aggregates")
    clusters = [{**c, "published": c["kind"] == "cluster"} for c in agg["clusters"]]
    return {"facet": agg["run"]["facet"], "levels": agg["run"]["levels"], "run": agg["run"], "warnings": run_warnings(agg["run"]),
            "facets": agg["facets"], "facets_unavailable": agg["facets_unavailable"], "clusters": clusters,
            "withheld": agg["withheld"], "hierarchies": store.facets(), "privacy_guarantee": agg.get("privacy_guarantee")}


def _facet_line(c: dict[str, Any]) -> str:
    parts = []
    langs = c["facets"].get("language")
    if langs and set(langs) == {"other"}:
        # every language cell was merged by the privacy rule (too few accounts per language)
        parts.append("languages withheld")
    elif langs:
        total = sum(langs.values())
        top = sorted(langs.items(), key=lambda kv: -kv[1])[:3]
        parts.append("lang " + ", ".join(f"{markup_safe(k)} {v / total:.0%}" for k, v in top))
    concern = c["facets"].get("concerning")
    if concern:
        parts.append(f"concern {concern['mean']:.2f}")
    return " · ".join(parts)


def print_report(store: RunStore, console: Console, depth: int = 2) -> None:
    """The tree. Every data-derived string goes through `markup_safe`: names are model output and
    may hold rich markup ("[/]" would crash the printer) or terminal escape sequences."""
    agg = store.read_json("aggregates")
    run = agg["run"]
    children: dict[str | None, list[dict]] = {}
    for c in agg["clusters"]:
        children.setdefault(c["parent"], []).append(c)
    for warning in run_warnings(run):
        console.print(f"[bold yellow]warning:[/] {markup_safe(warning)}")
    root = Tree(f"[bold]{count(run['conversations'], 'conversation')}[/] · {count(run['accounts'], 'account')} · "
                f"mode {markup_safe(run['mode'])} · facet {markup_safe(run['facet'])}")

    def add(node: Tree, parent: str | None, level: int) -> None:
        for c in sorted(children.get(parent, []), key=lambda c: (c["kind"] == "other", -c["size"])):
            name = markup_safe(c["name"])
            if c["kind"] == "other":
                node.add(f"[dim]{name}: {c['size']:,} ({c['share']:.1%})[/]")
                continue
            extra = _facet_line(c)
            branch = node.add(f"[bold]{name}[/] [dim]{c['size']:,} ({c['share']:.1%}), {count(c['accounts'], 'account')}{' · ' + extra if extra else ''}[/]")
            if level + 1 < depth:
                add(branch, c["id"], level + 1)

    add(root, None, 0)
    line = guarantee_line(agg.get("privacy_guarantee"))
    if line:
        console.print(f"[dim]privacy: {markup_safe(line)}[/]")
    console.print(root)
    by_reason: dict[str, list[str]] = {}
    for name, why in agg["facets_unavailable"].items():  # one line per reason: "request, task: unavailable, needs an LLM"
        by_reason.setdefault(why, []).append(name)
    for why, names in by_reason.items():
        console.print(f"[dim]{markup_safe(', '.join(names))}: unavailable, {markup_safe(why)}[/]")
    console.print(f"[dim]withheld by the privacy gates: {count(agg['withheld']['clusters'], 'cluster')}, {count(agg['withheld']['conversations'], 'conversation')}[/]")
    others = [f for f in store.facets() if f != run["facet"]]
    if others:
        console.print(f"[dim]other hierarchies in this run: {markup_safe(', '.join(others))} (convoscope report RUN --facet NAME)[/]")
