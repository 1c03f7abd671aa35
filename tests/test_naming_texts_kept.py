"""The extractive texts of a full read are kept in memory for the next read of the same run (the embed
stage's read, taken by the name stage), once, and never when anything they depend on changed."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from convoscope import analysis_text
from convoscope.analysis_text import analysis_texts
from convoscope.config import Config
from convoscope.context import RunContext
from convoscope.store import RunStore


@pytest.fixture(autouse=True)
def nothing_kept(monkeypatch):
    monkeypatch.setattr(analysis_text, "_kept", None)
    monkeypatch.setattr(analysis_text, "_served", set())


def make_run(tmp_path, texts, name="run"):
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "user": f"a{i % 3}", "messages": [{"role": "user", "content": t}]}) + "\n"
                            for i, t in enumerate(texts)))
    store = RunStore(tmp_path / name, create=True)
    store.write_table("facets", pa.table({"conv_id": [f"c{i}" for i in range(len(texts))]}))
    ctx = RunContext(config=Config(), store=store, input_path=data, show_progress=False)
    reads = []
    real = ctx.iter_input
    ctx.iter_input = lambda report=None: reads.append(1) or real(report)  # type: ignore[method-assign]
    return ctx, reads, data


def test_the_next_read_takes_the_kept_texts_once(tmp_path):
    ctx, reads, _ = make_run(tmp_path, ["mail me at bob@example.com", "bake   bread", "plot a dataframe"])
    first = list(analysis_texts(ctx))
    assert len(reads) == 1 and first[1] == "bake bread" and "bob@example.com" not in first[0]  # scrubbed as always
    assert list(analysis_texts(ctx, keep=False)) == first and len(reads) == 1  # kept: the input is not read
    assert list(analysis_texts(ctx)) == first and len(reads) == 2  # kept once only
    assert list(analysis_texts(ctx)) == first and len(reads) == 3  # and not kept again for this run
    assert analysis_text._kept is None


def test_nothing_is_kept_without_keep_or_from_a_partial_read(tmp_path):
    ctx, reads, _ = make_run(tmp_path, ["one request", "another request"])
    list(analysis_texts(ctx, keep=False))
    next(analysis_texts(ctx))  # a read stopped early
    assert analysis_text._kept is None
    list(analysis_texts(ctx))
    assert len(reads) == 3


@pytest.mark.parametrize("change", ["input", "settings", "rows", "run"])
def test_kept_texts_are_not_used_when_what_they_depend_on_changed(tmp_path, change):
    ctx, reads, data = make_run(tmp_path, ["bake bread", "plot a dataframe", "book a train"])
    kept = list(analysis_texts(ctx))
    if change == "input":
        data.write_text(data.read_text().replace("bake bread", "bake a cake"))
        expected = ["bake a cake", "plot a dataframe", "book a train"]
    elif change == "settings":  # texts depend on the settings (these happen to be short enough to be equal)
        ctx.config = Config.model_validate({"facets": {"extractive_max_chars": 50}})
        expected = kept
    elif change == "rows":
        ctx.store.write_table("facets", pa.table({"conv_id": ["c0", "c2"]}))
        expected = ["bake bread", "book a train"]
    else:
        other, _, _ = make_run(tmp_path, ["bake bread", "plot a dataframe", "book a train"], name="other")
        ctx.store = other.store
        expected = ["bake bread", "plot a dataframe", "book a train"]
    assert list(analysis_texts(ctx)) == expected and len(reads) == 2


def test_a_run_names_from_the_embed_stages_texts_as_from_a_fresh_read(tmp_path, monkeypatch):
    from convoscope.config import load_config
    from convoscope.pipeline import run_pipeline
    from fakes.corpus import make_records, write_jsonl

    data = write_jsonl(tmp_path / "convs.jsonl", make_records(per_topic=30, accounts=20))
    cfg = load_config(None, {"cluster.conversations_per_cluster": 12, "privacy.min_conversations": 5, "privacy.min_accounts": 3})
    reads = []
    real = RunContext.iter_input
    monkeypatch.setattr(RunContext, "iter_input", lambda self, report=None: reads.append(1) or real(self, report))
    kept = run_pipeline(data, tmp_path / "kept", cfg, show_progress=False)
    assert len(reads) == 3  # ingest, language facets, embed: naming took the embed stage's texts
    monkeypatch.setattr(analysis_text, "_read_key", lambda ctx, wanted: object())  # nothing ever matches: naming reads
    fresh = run_pipeline(data, tmp_path / "fresh", cfg, show_progress=False)
    assert len(reads) == 7
    for table in ("base_clusters", "base_term_counts", "hierarchy"):
        assert kept.read_table(table).equals(fresh.read_table(table)), table
