"""Stage 3: embed the text each conversation is clustered on, one L2-normalised row per facets row.

LLM mode embeds the hierarchy facet's summary (privacy-preserving text). Extractive mode embeds the
user's own messages, identifiers masked and cut to `facets.extractive_max_chars`; that text is
re-read from the input whenever needed and never stored.

The vectors go straight to a memory-mapped `.npy` in float16 (EMBEDDING_DTYPE), one batch at a
time, so a million conversations never hold their vectors in memory (a float32 copy was 2 GB, and
the stacking doubled it). The bundled USE model is encoded by one single-threaded worker process
per core on large inputs (see `use_worker_pool`).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from convoscope.context import RunContext
from convoscope.components import components_of, embedder_for, embedding_model
from convoscope.embedders import UniversalSentenceEncoder, VectorCache
from convoscope.analysis_text import analysis_texts
from convoscope.language_centering import centre_rows, language_offsets, offsets_to_json
from convoscope.scrub import SCRUB_VERSION
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage

# Unit vectors lose nothing that clustering sees in float16 (cosine similarities move by about 1e-3;
# NMI on CLINC150 and BANKING77 unchanged, docs/benchmarks.md) and take half the disk and page cache.
# Readers get float16 rows from `read_array("embeddings")`: convert blocks with `as_float32` before
# matrix products (numpy has no fast float16 matmul).
EMBEDDING_DTYPE = np.float16
# Below this many rows the worker processes cost more to start (about 2 s each to load USE) than they save.
POOL_MIN_ROWS = 20_000
# Batches queued per worker: enough to keep every worker busy while the parent reads and scrubs text.
POOL_BATCHES_AHEAD = 3
POOLED_MODELS = ("use-multilingual", "use")
LANGUAGE_BLOCK_ROWS = 65_536


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
    return (embedding_model(ctx), ctx.hierarchy_facet, config.facets.extractive_max_chars,
            config.privacy.scrub_identifiers and SCRUB_VERSION, np.dtype(EMBEDDING_DTYPE).name, centre_languages_min(ctx))


def as_float32(rows: np.ndarray) -> np.ndarray:
    """Rows of the embeddings artifact (float16, possibly memory-mapped) as a float32 array for arithmetic."""
    return np.asarray(rows, dtype=np.float32)


class _PendingBatch:
    """One batch between the vector cache and the model: the cached rows, and the distinct texts to encode."""

    def __init__(self, texts: list[str], cache: VectorCache | None):
        self.texts = texts
        self.cache = cache
        self.vectors: list[np.ndarray | None] = cache.get_many(texts) if cache else [None] * len(texts)
        # each distinct text is encoded once, so equal texts get bit-identical vectors (batch padding
        # can otherwise perturb the last digits) and reruns from the cache cluster identically
        self.distinct = list(dict.fromkeys(t for t, v in zip(texts, self.vectors) if v is None))

    def finish(self, fresh: np.ndarray | None) -> np.ndarray:
        """The batch's float32 vectors, given the encoded `distinct` texts (None when there were none)."""
        if self.distinct:
            assert fresh is not None
            if self.cache:
                self.cache.put_many(self.distinct, fresh)
            by_text = dict(zip(self.distinct, fresh))
            self.vectors = [by_text[t] if v is None else v for t, v in zip(self.texts, self.vectors)]
        return np.vstack([v for v in self.vectors if v is not None]).astype(np.float32, copy=False)


def embed_texts(embedder: Any, texts: list[str], cache: VectorCache | None = None) -> tuple[np.ndarray, int]:
    """Float32 unit vectors of one batch of texts, in order, and how many distinct texts were encoded (the
    rest came from `cache`). The unit of work of this stage, public for engines that spread the batches
    over workers of their own."""
    pending = _PendingBatch(texts, cache)
    return pending.finish(embedder.encode(pending.distinct) if pending.distinct else None), len(pending.distinct)


# -- worker processes (bundled USE model) -------------------------------------------------------------
_worker_embedder: Any = None


def _start_worker(spec: str) -> None:
    global _worker_embedder
    from convoscope.embedders import make_embedder

    _worker_embedder = make_embedder(spec)
    # One BLAS thread per process: USE multiplies small matrices (a few hundred tokens at a time), where a
    # second thread mostly waits (on a busy 2-core machine 2 threads ran at a fifth of 1 thread's speed).
    # The embedder has no setting for it yet; its lazily built numpy backend reads `threads` when first used.
    model = getattr(_worker_embedder, "_model", None)
    if model is not None and hasattr(model, "threads"):
        model.threads = 1


def _worker_encode(texts: list[str]) -> np.ndarray:
    return _worker_embedder.encode(texts)


def use_worker_pool(ctx: RunContext, n_rows: int) -> int:
    """Worker processes for this run's embedding: one per core for the bundled USE model (pure numpy,
    fastest single-threaded) on inputs large enough to pay for starting them; 0 (encode in this process)
    otherwise, and always for an injected embedder or a model with threads or a server of its own."""
    cores = os.cpu_count() or 1
    if components_of(ctx).embedder is not None or ctx.config.embedding.model not in POOLED_MODELS:
        return 0
    if cores < 2 or n_rows < POOL_MIN_ROWS:
        return 0
    return cores


def centre_languages_min(ctx: RunContext) -> int:
    """The language-centring rule in force (0: off). Off in DP mode: a mean over every row is not bounded per account."""
    return 0 if ctx.config.privacy.mode == "dp" else ctx.config.embedding.centre_languages_min


def centre_languages(ctx: RunContext, vectors: np.ndarray) -> list[str]:
    """Topics across languages (convoscope.language_centering): move each large language's rows of the
    embeddings artifact being written (`vectors`, a writable memory map) onto the common mean, block by
    block, and store the offsets for `assign`. Returns the artifacts written (none when nothing moved)."""
    min_rows = centre_languages_min(ctx)
    if not min_rows:
        return []
    languages = ctx.store.read_table("facets", columns=["language"]).column("language").to_pylist()
    offsets = language_offsets(vectors, languages, min_rows)
    if not offsets:
        return []
    for start in range(0, len(vectors), LANGUAGE_BLOCK_ROWS):
        stop = start + LANGUAGE_BLOCK_ROWS
        vectors[start:stop] = centre_rows(vectors[start:stop], languages[start:stop], offsets)
    return [ctx.store.write_json("language_offsets", offsets_to_json(offsets))]


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _embed(ctx: RunContext) -> StageOutput[EmbedRecord]:
    config = ctx.config
    n_rows = ctx.store.stage_record("facets")["rows"]
    workers = use_worker_pool(ctx, n_rows)
    # the workers load the model; the name (the vector cache's key) is the class's
    embedder = None if workers else embedder_for(ctx)  # an injected one (convoscope.components), else the configured model
    name = UniversalSentenceEncoder.name if embedder is None else embedder.name
    cache = VectorCache(_cache_dir(ctx), name) if config.embedding.cache else None
    computed = 0
    written = 0
    dims = 0
    with ExitStack() as stack:
        if cache:
            stack.callback(cache.close)
        if workers:
            import multiprocessing

            # spawn, not fork: the parent holds threads (BLAS, the progress display) that fork would copy mid-state
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                           initializer=_start_worker, initargs=(config.embedding.model,)))
        out: np.ndarray | None = None
        queue: deque[tuple[_PendingBatch, Future | None]] = deque()

        def write(vectors: np.ndarray) -> None:
            nonlocal out, written, dims
            if out is None:
                dims = int(vectors.shape[1])
                out = stack.enter_context(ctx.store.array_writer("embeddings", (n_rows, dims), EMBEDDING_DTYPE))
            if written + len(vectors) > n_rows:
                raise RuntimeError(f"embed: more texts than the {n_rows:,} facets rows")
            out[written:written + len(vectors)] = vectors
            written += len(vectors)

        def finish_oldest() -> None:
            pending, future = queue.popleft()
            write(pending.finish(future.result() if future is not None else None))
            progress.advance(task, len(pending.texts))

        with ctx.progress() as progress:
            task = progress.add_task(f"Embedding ({name})", total=n_rows)
            for batch in _batches(analysis_texts(ctx), config.embedding.batch_size):
                if workers:
                    pending = _PendingBatch(batch, cache)
                    computed += len(pending.distinct)
                    queue.append((pending, pool.submit(_worker_encode, pending.distinct) if pending.distinct else None))
                    while len(queue) > workers * POOL_BATCHES_AHEAD:
                        finish_oldest()
                else:
                    vectors, fresh = embed_texts(embedder, batch, cache)
                    computed += fresh
                    write(vectors)
                    progress.advance(task, len(batch))
            while queue:
                finish_oldest()
        if written != n_rows or out is None:
            raise RuntimeError(f"embed: {written:,} texts for {n_rows:,} facets rows")
        centred = centre_languages(ctx, out)  # before the artifact gets its name: an interrupted run recomputes
    artifact = "array:embeddings"
    return StageOutput([artifact, *centred], EmbedRecord(model=name, dims=dims, computed=computed, reused=int(n_rows - computed)))


EMBED = Stage("embed", _settings, _embed)


def run_embed(ctx: RunContext, upstream: str) -> str:
    return run_stage(EMBED, ctx, upstream)
