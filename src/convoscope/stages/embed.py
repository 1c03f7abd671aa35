"""Stage 3: embed the text each conversation is clustered on, one L2-normalised row per facets row.

LLM mode embeds the hierarchy facet's summary (privacy-preserving text). Extractive mode embeds the
user's own messages, identifiers masked and cut to `facets.extractive_max_chars`; that text is
re-read from the input whenever needed and never stored.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from convoscope.context import RunContext
from convoscope.embedders import VectorCache, make_embedder
from convoscope.scrub import scrub
from convoscope.scrub import SCRUB_VERSION
from convoscope.store import fingerprint

STAGE = "embed"
FAILED_SUMMARY = "No summary: the facet model failed on this conversation."


def extractive_text(user_text: str, max_chars: int, scrub_text: bool) -> str:
    text = " ".join(user_text.split())[:max_chars]
    return scrub(text) if scrub_text else text


def analysis_texts(ctx: RunContext) -> Iterator[str]:
    """The text clustered for each row of the facets table, in row order."""
    config = ctx.config
    facets = ctx.store.read_table("facets", columns=["conv_id"] + ([_facet_column(ctx)] if config.llm_mode else []))
    if config.llm_mode:
        for value in facets.column(_facet_column(ctx)).to_pylist():
            yield value if value else FAILED_SUMMARY
        return
    wanted = facets.column("conv_id").to_pylist()
    position = 0
    for conv in ctx.iter_input():
        if position < len(wanted) and conv.id == wanted[position]:
            position += 1
            yield extractive_text(conv.user_text(" "), config.facets.extractive_max_chars, config.privacy.scrub_identifiers)
    if position != len(wanted):
        from convoscope.errors import InputError

        raise InputError("the input changed while the run was using it; start the run again", path=str(ctx.input_path))


def _facet_column(ctx: RunContext) -> str:
    name = ctx.hierarchy_facet
    return name if name in ("request", "task") else f"facet.{name}"


def _cache_dir(ctx: RunContext):
    return ctx.config.llm.resolved_cache_dir()


def run_embed(ctx: RunContext, upstream: str) -> str:
    config = ctx.config
    fp = fingerprint(STAGE, upstream, config.embedding.model, ctx.hierarchy_facet, config.facets.extractive_max_chars, config.privacy.scrub_identifiers and SCRUB_VERSION)
    if ctx.store.stage_complete(STAGE, fp):
        return fp
    started = time.perf_counter()
    embedder = make_embedder(config.embedding.model)
    cache = VectorCache(_cache_dir(ctx), embedder.name) if config.embedding.cache else None
    n_rows = ctx.store.stage_record("facets")["rows"]
    chunks: list[np.ndarray] = []
    batch: list[str] = []
    computed = 0

    def flush() -> None:
        nonlocal computed
        vectors: list[np.ndarray | None] = cache.get_many(batch) if cache else [None] * len(batch)
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            # each distinct text is encoded once, so equal texts get bit-identical vectors (batch padding
            # can otherwise perturb the last digits) and reruns from the cache cluster identically
            distinct = list(dict.fromkeys(batch[i] for i in missing))
            fresh = embedder.encode(distinct)
            computed += len(distinct)
            if cache:
                cache.put_many(distinct, fresh)
            by_text = dict(zip(distinct, fresh))
            for i in missing:
                vectors[i] = by_text[batch[i]]
        chunks.append(np.vstack(vectors).astype(np.float32))
        batch.clear()

    with ctx.progress() as progress:
        task = progress.add_task(f"Embedding ({embedder.name})", total=n_rows)
        for text in analysis_texts(ctx):
            batch.append(text)
            if len(batch) == config.embedding.batch_size:
                progress.advance(task, len(batch))
                flush()
        if batch:
            progress.advance(task, len(batch))
            flush()
    if cache:
        cache.close()
    embeddings = np.vstack(chunks)
    artifact = ctx.store.write_array("embeddings", embeddings)
    ctx.store.mark_complete(
        STAGE, fp, [artifact], seconds=time.perf_counter() - started,
        model=embedder.name, dims=int(embeddings.shape[1]), computed=computed, reused=int(len(embeddings) - computed),
    )
    return fp
