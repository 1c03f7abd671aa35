"""One way to run a stage: fingerprint, skip when complete (resume), time, record.

A stage (`Stage`) declares its name, the settings it fingerprints (a function of the RunContext) and
the function that does its work; that function writes the stage's artifacts through the store and
returns them with a typed record (`StageRecord`), whose fields become the keys of the stage's entry in
`manifest.json` next to the runner's own (`fingerprint`, `artifacts`, `seconds`, `finished_at`).
`run_stage` is the only code that decides whether a stage runs:

    fp = fingerprint(stage.name, upstream, *stage.settings(ctx))
    complete in the manifest with fp and all its artifacts present -> skipped (a rerun resumes here)
    else: work, then RunStore.mark_complete(stage.name, fp, artifacts, seconds=..., **record fields)

The record is written after the artifacts, so an interrupted stage is never taken as complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from convoscope.store import RunStore, fingerprint

if TYPE_CHECKING:
    from convoscope.context import RunContext

_OMIT_IF_NONE = "omit_if_none"


def optional_field() -> Any:
    """A record field written to the manifest only when it has a value (a key some runs of the stage lack)."""
    return field(default=None, metadata={_OMIT_IF_NONE: True})


@dataclass(frozen=True)
class StageRecord:
    """What a stage adds to its manifest entry: subclass it with one field per manifest key."""

    def manifest_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not (f.metadata.get(_OMIT_IF_NONE) and getattr(self, f.name) is None)}


R = TypeVar("R", bound=StageRecord)


@dataclass(frozen=True)
class StageOutput(Generic[R]):
    """A stage's work done: the store names of the artifacts it wrote, and its record."""

    artifacts: list[str]
    record: R


@dataclass(frozen=True)
class Stage(Generic[R]):
    """A stage of the pipeline.

    name: its name in the manifest. settings: what it fingerprints besides its upstream fingerprint.
    work: `work(ctx, *inputs)` writes the artifacts and returns them with the record. inputs_key: when
    the stage takes inputs besides the run directory (facets takes the screener's selection), what of
    them is fingerprinted (folded into the upstream fingerprint). enabled: an optional stage (screen)
    that is disabled passes its upstream fingerprint through, records nothing and writes nothing."""

    name: str
    settings: Callable[[RunContext], tuple[Any, ...]]
    work: Callable[..., StageOutput[R]]
    inputs_key: Callable[..., Any] | None = None
    enabled: Callable[[RunContext], bool] | None = None


def stage_fingerprint(stage: Stage[Any], ctx: RunContext, upstream: str, *inputs: Any) -> str:
    if stage.inputs_key is not None:
        upstream = fingerprint(upstream, stage.inputs_key(*inputs))
    return fingerprint(stage.name, upstream, *stage.settings(ctx))


def record_stage(store: RunStore, name: str, fp: str, artifacts: list[str], record: StageRecord, *, seconds: float) -> None:
    """Mark stage `name` complete with fingerprint `fp`: its manifest entry, with `record`'s fields."""
    store.mark_complete(name, fp, artifacts, seconds=seconds, **record.manifest_fields())


def run_stage(stage: Stage[Any], ctx: RunContext, upstream: str, *inputs: Any) -> str:
    """Run `stage` into ctx.store unless it is complete with the same fingerprint; returns the fingerprint."""
    if stage.enabled is not None and not stage.enabled(ctx):
        return upstream
    fp = stage_fingerprint(stage, ctx, upstream, *inputs)
    if ctx.store.stage_complete(stage.name, fp):
        return fp
    started = time.perf_counter()
    out = stage.work(ctx, *inputs)
    record_stage(ctx.store, stage.name, fp, out.artifacts, out.record, seconds=time.perf_counter() - started)
    return fp
