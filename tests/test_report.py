"""`convoscope report`'s text: what an analyst reads under the tree."""

from __future__ import annotations

from rich.console import Console

from convoscope.report import print_report
from convoscope.store import RunStore
from fakes.run_fixture import make_run


def test_unavailable_facets_one_line_per_reason(tmp_path):
    """Extractive runs printed 'concerning: unavailable (needs an LLM (run with --llm))', one line per facet."""
    store = RunStore(make_run(tmp_path / "run", n_points=300, levels=2, seed=0))
    agg = store.read_json("aggregates")
    agg["facets_unavailable"] = {"request": "needs an LLM", "task": "needs an LLM", "concerning": "needs an LLM (run with --llm)"}
    store.write_json("aggregates", agg)
    console = Console(record=True, width=200)
    print_report(store, console)
    lines = console.export_text().splitlines()
    assert "request, task: unavailable, needs an LLM" in lines
    assert "concerning: unavailable, needs an LLM (run with --llm)" in lines
    assert not any("((" in line or "))" in line for line in lines)
