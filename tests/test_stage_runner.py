"""The stage runner (convoscope.stage_runner): fingerprint, resume, typed records, optional stages, inputs."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pyarrow as pa
import pytest

from convoscope.stage_runner import Stage, StageOutput, StageRecord, optional_field, record_stage, run_stage
from convoscope.store import RunStore, fingerprint


@dataclass(frozen=True)
class CountRecord(StageRecord):
    rows: int
    note: str | None = optional_field()


def _ctx(tmp_path, **settings):
    return SimpleNamespace(store=RunStore(tmp_path / "run", create=True), settings={"size": 3, **settings}, calls=[])


def _work(ctx, *inputs):
    ctx.calls.append(inputs)
    artifact = ctx.store.write_table("things", pa.table({"x": list(range(ctx.settings["size"]))}))
    return StageOutput([artifact], CountRecord(rows=ctx.settings["size"], note="picked" if inputs else None))


def _stage(**extra):
    return Stage("things", lambda ctx: (ctx.settings["size"],), _work, **extra)


def test_runs_once_then_resumes_and_reruns_when_settings_change(tmp_path):
    ctx = _ctx(tmp_path)
    fp = run_stage(_stage(), ctx, "up")
    assert fp == fingerprint("things", "up", 3)  # the stage's name, its upstream, its settings
    rec = ctx.store.stage_record("things")
    assert rec["fingerprint"] == fp and rec["artifacts"] == ["table:things"] and rec["rows"] == 3
    assert "note" not in rec  # an optional field without a value is not a manifest key
    assert {"seconds", "finished_at"} <= set(rec)
    assert run_stage(_stage(), ctx, "up") == fp and len(ctx.calls) == 1  # complete: skipped
    run_stage(_stage(), ctx, "other upstream")
    ctx.settings["size"] = 4
    run_stage(_stage(), ctx, "other upstream")
    assert len(ctx.calls) == 3 and ctx.store.stage_record("things")["rows"] == 4


def test_a_missing_artifact_reruns_the_stage(tmp_path):
    ctx = _ctx(tmp_path)
    run_stage(_stage(), ctx, "up")
    (ctx.store.root / "things.parquet").unlink()
    run_stage(_stage(), ctx, "up")
    assert len(ctx.calls) == 2


def test_a_failed_stage_is_not_recorded(tmp_path):
    ctx = _ctx(tmp_path)

    def broken(ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_stage(Stage("things", lambda ctx: (), broken), ctx, "up")
    assert ctx.store.stage_record("things") is None


def test_disabled_stage_passes_its_upstream_through(tmp_path):
    ctx = _ctx(tmp_path)
    assert run_stage(_stage(enabled=lambda ctx: False), ctx, "up") == "up"
    assert ctx.calls == [] and ctx.store.stage_record("things") is None


def test_inputs_reach_the_work_and_their_key_the_fingerprint(tmp_path):
    ctx = _ctx(tmp_path)
    stage = _stage(inputs_key=lambda ids: sorted(ids) if ids is not None else None)
    fp = run_stage(stage, ctx, "up", {"b", "a"})
    assert fp == fingerprint("things", fingerprint("up", ["a", "b"]), 3)
    assert ctx.calls == [({"b", "a"},)] and ctx.store.stage_record("things")["note"] == "picked"
    assert run_stage(stage, ctx, "up", {"a", "b"}) == fp and len(ctx.calls) == 1
    assert run_stage(stage, ctx, "up", {"a"}) != fp


def test_record_stage_writes_a_record_for_work_done_elsewhere(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    record_stage(store, "things", "fp", [], CountRecord(rows=2, note="x"), seconds=0.0)
    rec = store.stage_record("things")
    assert rec["rows"] == 2 and rec["note"] == "x" and store.stage_complete("things", "fp")
