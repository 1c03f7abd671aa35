"""The vendors' batch interfaces (half price, answers within 24 hours): submit, poll, collect, resume.

A backend that has one exposes a `BatchAPI` (backends/anthropic.py: Message Batches; backends/
openai_compat.py: the OpenAI Batch API). `run_batches` drives it for a set of items keyed by a
custom id (the request's keyed cache hash: stable across runs, and useless to anyone without the
user's secret key): items are split to the vendor's limits, each batch id is written to a state file
in the run directory *before* polling starts, so an interrupted run resumes polling the same batches
instead of paying for them twice, and items that expired, were canceled or met a server error are
resubmitted alone in a new batch. Parsing, validation, the cache and usage stay in the client.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Protocol

import orjson

from convoscope.errors import LLMFatalError
from convoscope.llm.backends import Completion, TransientError
from convoscope.llm.base import LLMRequest
from convoscope.private_files import PRIVATE_FILE_MODE, make_private_dirs

log = logging.getLogger("convoscope.llm")

STATE_FILE = "llm-batches.json"


@dataclass
class ItemResult:
    completion: Completion | None = None  # the answer; None when the item was not answered
    retry: bool = False  # expired, canceled or a server error: worth resubmitting
    error: str | None = None  # why it was not answered (never quotes the prompt)


@dataclass
class BatchStatus:
    ended: bool
    finished: int  # items done so far, answered or not (for progress)
    failure: str | None = None  # the whole batch was refused (e.g. the OpenAI input file failed validation)


class BatchAPI(Protocol):
    max_items: int  # the vendor's limits per batch
    max_bytes: int

    def entry(self, custom_id: str, request: LLMRequest) -> dict[str, Any]: ...

    async def create(self, entries: list[dict[str, Any]]) -> str: ...

    async def status(self, batch_id: str) -> BatchStatus: ...

    async def results(self, batch_id: str) -> dict[str, ItemResult]: ...


class BatchState:
    """Open batches of this run: {batch id: {"backend", "custom_ids", "created"}} in `STATE_FILE`. Every
    change is a read-modify-write under an exclusive lock (several processes may share a run directory,
    e.g. the Ray engine's workers: each keeps its own batches, none drops another's), written atomically
    (a kill leaves the old or the new file, never half of one). Without a directory the state lives in
    memory only, and an interrupted run cannot resume its batches."""

    def __init__(self, directory: Path | None):
        self.path = directory / STATE_FILE if directory is not None else None
        self._memory: dict[str, dict[str, Any]] = {}
        self.batches  # an unreadable file is reported now, before anything is submitted

    @property
    def batches(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return self._memory
        if not self.path.exists():
            return {}
        try:
            return dict(orjson.loads(self.path.read_bytes())["batches"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LLMFatalError(
                f"{self.path}: unreadable batch state ({type(exc).__name__}); its batches cannot be resumed. "
                "Delete the file to submit them anew (they will be paid again)"
            ) from None

    def open_for(self, backend: str) -> dict[str, list[str]]:
        return {batch_id: entry["custom_ids"] for batch_id, entry in self.batches.items() if entry["backend"] == backend}

    def add(self, batch_id: str, backend: str, custom_ids: list[str]) -> None:
        with self._locked() as batches:
            batches[batch_id] = {"backend": backend, "custom_ids": custom_ids, "created": time.time()}

    def remove(self, batch_id: str) -> None:
        with self._locked() as batches:
            batches.pop(batch_id, None)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        if self.path is None:
            yield self._memory
            return
        import fcntl  # POSIX, as the run directory's own lock (store.RunLock)

        make_private_dirs(self.path.parent)
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_CREAT | os.O_RDWR, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            batches = self.batches
            yield batches
            self._write(batches)
        finally:
            os.close(lock_fd)  # closing releases the lock

    def _write(self, batches: dict[str, dict[str, Any]]) -> None:
        assert self.path is not None
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps({"version": 1, "batches": batches}))
            os.chmod(tmp, PRIVATE_FILE_MODE)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def split(entries: list[dict[str, Any]], max_items: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """Consecutive chunks within the vendor's item and size limits (sizes as serialised JSON lines)."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(orjson.dumps(entry)) + 1
        if current and (len(current) >= max_items or size + entry_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


@dataclass
class PollSettings:
    first_s: float  # first wait between polls; grows by half each time up to max_s
    max_s: float
    max_retries: int  # consecutive transient failures of one call before the run stops (batches are kept)
    resubmits: int  # rounds of resubmitting expired / errored items
    max_items: int | None  # a lower limit than the vendor's, e.g. for tests


async def _persist(call: Callable[[], Awaitable[Any]], what: str, settings: PollSettings, state: BatchState) -> Any:
    """A batch API call retried on transient errors; after too many, the run stops with the batches kept."""
    delay = settings.first_s
    for attempt in range(settings.max_retries + 1):
        try:
            return await call()
        except TransientError as exc:
            if attempt == settings.max_retries:
                where = f"; their ids are kept in {state.path}: rerun to resume polling" if state.path and state.batches else ""
                raise LLMFatalError(f"batch API {what}: {exc}; gave up after {attempt + 1} attempts{where}") from None
            log.info("batch API %s: %s; retry %d/%d in %.1fs", what, exc, attempt + 1, settings.max_retries, delay)
            await asyncio.sleep(delay)
            delay = min(settings.max_s, delay * 2)
    raise AssertionError("unreachable")


async def run_batches(
    api: BatchAPI,
    backend: str,
    requests: dict[str, LLMRequest],
    state: BatchState,
    settings: PollSettings,
    on_results: Callable[[dict[str, ItemResult]], Awaitable[None]],
    before_paying: Callable[[list[str], bool], list[str]],
    on_progress: Callable[[int], None],
) -> dict[str, ItemResult]:
    """Answers for every custom id in `requests`, through batches: open batches of an earlier run that
    hold some of them are polled, the rest submitted. `on_results` gets each batch's results before the
    batch leaves the state file (so the caller has them cached, on disk, first); `before_paying(ids, submitting)` gets
    the ids of resumed batches (already paid for), then those about to be submitted, and returns those
    it accepts (the cost cap's reservation: a leading part, or none); the rest are not submitted. Returns the final result per id
    (items still unanswered after `resubmits` rounds keep their last error)."""
    pending = set(requests)
    final: dict[str, ItemResult] = {}
    open_batches = {bid: [c for c in ids if c in pending] for bid, ids in state.open_for(backend).items()}
    open_batches = {bid: ids for bid, ids in open_batches.items() if ids}
    resumed = {c for ids in open_batches.values() for c in ids}
    if open_batches:
        log.info("resuming %d open batch(es) holding %d item(s)", len(open_batches), len(resumed))
    if resumed:
        before_paying(sorted(resumed), False)
    to_submit = [c for c in requests if c not in resumed]
    for round_ in range(settings.resubmits + 1):
        if to_submit:
            to_submit = before_paying(to_submit, True)
        if to_submit:
            entries = [api.entry(c, requests[c]) for c in to_submit]
            max_items = min(api.max_items, settings.max_items or api.max_items)
            for chunk in split(entries, max_items, api.max_bytes):
                ids = [e["custom_id"] for e in chunk]
                batch_id = await _persist(lambda chunk=chunk: api.create(chunk), "create", settings, state)
                state.add(batch_id, backend, ids)  # before polling: a kill from here on resumes, not resubmits
                open_batches[batch_id] = ids
        retry: list[str] = []
        finished: dict[str, int] = {}
        delay = settings.first_s
        while open_batches:
            for batch_id in list(open_batches):
                status = await _persist(lambda b=batch_id: api.status(b), "status", settings, state)
                if status.failure is not None:
                    state.remove(batch_id)
                    raise LLMFatalError(f"batch {batch_id} was refused: {status.failure}")
                if not status.ended:
                    on_progress(status.finished - finished.get(batch_id, 0))
                    finished[batch_id] = status.finished
                    continue
                results = await _persist(lambda b=batch_id: api.results(b), "results", settings, state)
                ids = open_batches.pop(batch_id)
                mine = {c: results.get(c, ItemResult(retry=True, error="missing from the batch results")) for c in ids}
                await on_results({c: r for c, r in mine.items() if r.completion is not None})
                on_progress(len(ids) - finished.get(batch_id, 0))
                for custom_id, result in mine.items():
                    final[custom_id] = result
                    if result.completion is None and result.retry:
                        retry.append(custom_id)
                state.remove(batch_id)  # after on_results: a kill before this line re-downloads, never resubmits
            if open_batches:
                await asyncio.sleep(delay)
                delay = min(settings.max_s, delay * 1.5)
        if not retry:
            break
        if round_ < settings.resubmits:
            log.info("resubmitting %d batch item(s) that expired or failed", len(retry))
            on_progress(-len(retry))
        to_submit = retry
    return final
