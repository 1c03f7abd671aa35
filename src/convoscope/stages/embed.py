"""Stage 3: embed the text each conversation is clustered on, one L2-normalised row per facets row.

LLM mode embeds the hierarchy facet's summary (privacy-preserving text). Extractive mode embeds the
user's own messages, identifiers masked and cut to `facets.extractive_max_chars`; that text is
re-read from the input whenever needed and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convoscope.context import RunContext
from convoscope.components import embedder_for, embedding_model
from convoscope.embedders import VectorCache
from convoscope.analysis_text import analysis_texts
from convoscope.scrub import SCRUB_VERSION
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage


@dataclass(frozen=True)
class EmbedRecord(StageRecord):
    model: str  # the embedder's name
    dims: int
    computed: int  # distinct texts encoded by this run (the rest came from the vector cache)
    reused: int

def _cache_dir(ctx: RunContext):
    return ctx.config.llm.resolved_cache_dir()


def _settings(ctx: RunContext) -> tuple:
    config = ctx.config
    return embedding_model(ctx), ctx.hierarchy_facet, config.facets.extractive_max_chars, config.privacy.scrub_identifiers and SCRUB_VERSION


def _embed(ctx: RunContext) -> StageOutput[EmbedRecord]:
    config = ctx.config
    embedder = embedder_for(ctx)  # an injected one (convoscope.components), else the configured model
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
    return StageOutput([artifact], EmbedRecord(model=embedder.name, dims=int(embeddings.shape[1]), computed=computed,
                                               reused=int(len(embeddings) - computed)))


EMBED = Stage("embed", _settings, _embed)


def run_embed(ctx: RunContext, upstream: str) -> str:
    return run_stage(EMBED, ctx, upstream)
