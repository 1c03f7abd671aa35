"""The client every stage talks to: routes a request to its role's backend, and adds the cache,
concurrency bound, rate limits, retries, schema validation, usage accounting and the spending cap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Generic, Sequence, TypeVar

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from convoscope.errors import BudgetExceeded, ConfigError, LLMFatalError
from convoscope.llm.backends import Backend, Completion, TransientError, make_backend
from convoscope.llm.base import ChatMessage, LLMRequest, LLMResponse, Usage
from convoscope.llm.batch import BatchAPI, BatchState, ItemResult, PollSettings, run_batches
from convoscope.llm.cache import ResponseCache, cache_key
from convoscope.llm.limits import AdaptiveLimit, TokenBucket, approx_request_tokens, backoff_delay
from convoscope.llm.parse import ParseResult, parse_structured
from convoscope.llm.settings import BATCH_ROLES, ROLES, BackendSpec, LLMSettings, parse_spec
from convoscope.llm.usage import PriceTable, RoleUsage, UsageLedger

log = logging.getLogger("convoscope.llm")

SCHEMA_FEEDBACK = (
    "Your answer could not be used: {feedback}\n"
    "Answer again with only a JSON value that matches the required schema, and nothing else."
)

T = TypeVar("T")


class _PerLoop(Generic[T]):
    """An object bound to the running event loop (httpx pools, semaphores), made anew when a caller
    uses the client from another loop, e.g. one asyncio.run() per pipeline stage."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: T | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._value is None:
            self._value, self._loop = self._factory(), loop
        return self._value

    @property
    def value(self) -> T | None:
        """The latest value made, on whatever loop (for reports)."""
        return self._value

    def current(self) -> T | None:
        """The value for the running loop, without making one."""
        return self._value if self._loop is asyncio.get_running_loop() else None


class HttpPool:
    """One aiohttp session per event loop, holding up to max_concurrency keep-alive connections (aiohttp
    sets TCP_NODELAY, so a body never waits for a delayed ACK). Idle connections are kept 30 s: a busy
    machine may leave one idle for several seconds between requests, and reconnecting costs more CPU
    than the request."""

    def __init__(self, settings: LLMSettings):
        def make() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=settings.max_concurrency, limit_per_host=0, keepalive_timeout=30)
            return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=settings.timeout_s), auto_decompress=True)

        self._session = _PerLoop(make)

    def client(self) -> aiohttp.ClientSession:
        return self._session.get()

    async def aclose(self) -> None:
        session = self._session.current()
        if session is not None:
            await session.close()


@dataclass
class _Route:
    spec: BackendSpec
    backend: Backend

    @property
    def price_model(self) -> str | None:
        return None if self.backend.local else self.spec.model

    @property
    def batches(self) -> BatchAPI | None:
        return getattr(self.backend, "batches", None)


BATCH_KINDS = ("anthropic", "openai")  # backends with a batch interface (`backend.batches`)
BATCH_CHUNK = 50_000  # requests per complete_many in batch mode: a provider batch or two, some 100 MB of prompts


class _GaveUp(Exception):
    """Retries exhausted on a transient error: the item fails, the run goes on."""


class Client:
    def __init__(self, settings: LLMSettings, routes: dict[str, _Route], http: HttpPool, *, progress: bool = True, run_dir: Path | None = None):
        self.settings = settings
        self.run_dir = run_dir  # where batch ids are kept (resume); set by the run's context when it has one
        self._batch_state: BatchState | None = None
        self._secret_key: bytes | None = None
        self._routes = routes
        self._http = http
        self._progress = progress
        self._cache = ResponseCache(settings.resolved_cache_dir()) if settings.cache else None
        self._ledger = UsageLedger(PriceTable(settings.prices), settings.max_cost_usd)
        self._in_flight = _PerLoop(lambda: AdaptiveLimit(settings.max_concurrency))
        self._rpm = TokenBucket(settings.requests_per_minute) if settings.requests_per_minute else None
        self._tpm = TokenBucket(settings.tokens_per_minute) if settings.tokens_per_minute else None
        self.requests_sent = 0  # requests handed to a backend, retries included; cache hits excluded

    # -- the LLMClient interface -------------------------------------------------------------

    async def complete(self, request: LLMRequest) -> LLMResponse:
        route, stats, key, hit = self._lookup(request)
        if hit is not None:
            return hit
        return self._finish(stats, request, key, await self._answer(route, stats, request))

    def _lookup(self, request: LLMRequest) -> tuple[_Route, RoleUsage, str | None, LLMResponse | None]:
        """The request's route and role counters, its cache key, and the cached answer if there is one."""
        route = self._route(request.role)
        stats = self._ledger.role(request.role, str(route.spec))
        stats.calls += 1
        key = cache_key(route.spec.kind, route.spec.model, request, self._cache.key) if self._cache else None
        if key is not None and (hit := self._cache.get(key)) is not None:
            stats.cached_calls += 1
            self._ledger.record_task(request.task or request.role, hit.usage, cached=True, failed=False)
            return route, stats, key, LLMResponse(hit.text, hit.parsed, hit.usage, cached=True)
        return route, stats, key, None

    def _finish(self, stats: RoleUsage, request: LLMRequest, key: str | None, response: LLMResponse) -> LLMResponse:
        self._ledger.record_task(request.task or request.role, response.usage, cached=False, failed=response.failed)
        if response.failed:
            stats.failed += 1
        elif key is not None:
            self._cache.put(key, response.text, response.parsed, response.usage)
        return response

    async def complete_many(
        self,
        requests: Sequence[LLMRequest],
        *,
        description: str = "",
        show_progress: bool = True,
    ) -> list[LLMResponse]:
        """Responses in request order. A fatal error cancels the requests in flight and
        raises; BudgetExceeded lets the requests in flight finish (they are paid for), then raises.
        `show_progress=False` when the caller already shows progress (one live display at a time)."""
        results: list[LLMResponse | None] = [None] * len(requests)
        batched = [i for i, r in enumerate(requests) if self._batched(r)]
        with (self._progress_bar(description, len(requests)) if show_progress else _NoProgress()) as advance:

            async def run(index: int, request: LLMRequest) -> None:
                results[index] = await self.complete(request)
                advance(1)

            batched_set = set(batched)
            tasks = [asyncio.create_task(run(i, r)) for i, r in enumerate(requests) if i not in batched_set]
            if batched:
                tasks.append(asyncio.create_task(self._complete_batched(requests, batched, results, advance)))
            if tasks:
                await self._settle(tasks)
        return results  # type: ignore[return-value]  # every slot is filled once _settle returns

    # -- batch interfaces ---------------------------------------------------------------------------

    def _secret(self) -> bytes:
        if self._cache is not None:
            return self._cache.key
        if self._secret_key is None:
            from convoscope.secrets_key import secret_key

            self._secret_key = secret_key()
        return self._secret_key

    def _batched(self, request: LLMRequest) -> bool:
        return self.batched_role(request.role)

    def batched_role(self, role: str) -> bool:
        """Whether this role's requests go through a batch API."""
        return self.settings.batch and role in BATCH_ROLES and role in self._routes and self._routes[role].batches is not None

    def chunk_size(self, role: str, live: int) -> int:
        """How many requests a stage should hand to one `complete_many`. Live, `live` (it bounds memory, and
        the cache makes each chunk resumable); in batch mode far more, since each call waits for its
        batches to end (minutes to hours): 256-request chunks would queue hundreds of batches one after
        another where one call submits them all at once and polls them together."""
        return BATCH_CHUNK if self.batched_role(role) else live

    async def _complete_batched(
        self, requests: Sequence[LLMRequest], indices: list[int], results: list[LLMResponse | None], advance: Callable[[int], None]
    ) -> None:
        """Cached answers from the cache, the rest through the backend's batch API (per backend), then the
        same parsing, validation, answer_check, cache and usage as live calls. An answer that misses its
        schema is re-asked live with feedback; items that still have no answer after the resubmissions fail."""
        waiting: dict[str, list[tuple[int, RoleUsage]]] = {}  # custom id -> the slots it answers (duplicates share one)
        by_route: dict[str, tuple[_Route, dict[str, LLMRequest]]] = {}
        for index in indices:
            request = requests[index]
            route, stats, key, hit = self._lookup(request)
            if hit is not None:
                results[index] = hit
                advance(1)
                continue
            # keyed: means nothing without the secret key, so the run directory's state file reveals no prompt
            custom_id = key or cache_key(route.spec.kind, route.spec.model, request, self._secret())
            waiting.setdefault(custom_id, []).append((index, stats))
            by_route.setdefault(str(route.spec), (route, {}))[1].setdefault(custom_id, request)
        for backend_name, (route, items) in by_route.items():
            await self._run_route_batches(route, backend_name, items, waiting, requests, results, advance)

    async def _run_route_batches(
        self,
        route: _Route,
        backend_name: str,
        items: dict[str, LLMRequest],
        waiting: dict[str, list[tuple[int, RoleUsage]]],
        requests: Sequence[LLMRequest],
        results: list[LLMResponse | None],
        advance: Callable[[int], None],
    ) -> None:
        api = route.batches
        assert api is not None
        reserved: list[float] = []
        follow_ups: list[asyncio.Task[None]] = []

        refused: list[BudgetExceeded] = []

        def reserve(custom_ids: list[str], submitting: bool) -> list[str]:
            """Each item's worst case at batch prices, before anything is sent: the items that fit under the
            cap are submitted (as live mode does the work that fits), the first that does not ends the list.
            Resumed batches are already paid for: held, never refused."""
            accepted: list[str] = []
            for custom_id in custom_ids:
                request = items[custom_id]
                if not submitting:
                    reserved.append(self._ledger.hold(route.price_model, approx_request_tokens(request), request.max_tokens, batch=True))
                    continue
                try:
                    reserved.append(self._ledger.reserve(route.price_model, approx_request_tokens(request), request.max_tokens, batch=True))
                except BudgetExceeded as exc:
                    refused.append(exc)
                    break
                accepted.append(custom_id)
            self.requests_sent += len(accepted)
            return accepted if submitting else custom_ids

        async def collect(answers: dict[str, ItemResult]) -> None:
            """A batch's answers validated (schema misses re-asked live) and cached on disk before the batch
            leaves the state file: a kill after that point must not lose what was paid for."""
            for custom_id, result in answers.items():
                assert result.completion is not None
                slots = waiting[custom_id]
                self._ledger.record(slots[0][1], route.price_model, result.completion.usage, batch=True)
                follow_ups.append(asyncio.create_task(self._settle_batched(route, custom_id, items[custom_id], result, slots, results, advance)))
            await asyncio.gather(*follow_ups)
            follow_ups.clear()
            if self._cache is not None:
                self._cache.flush()

        if self._batch_state is None:
            self._batch_state = BatchState(self.run_dir)
        poll = PollSettings(self.settings.batch_poll_s, self.settings.batch_poll_max_s, self.settings.max_retries,
                            self.settings.batch_resubmits, self.settings.batch_max_items)
        try:
            # the bar follows the provider's own count of finished items while the batches run
            final = await run_batches(api, backend_name, items, self._batch_state, poll, collect, reserve, advance)
        finally:
            for amount in reserved:
                self._ledger.release(amount)
            for task in follow_ups:  # only left when the batches stopped early (an error, a cancel)
                task.cancel()
        if refused:  # what fitted under the cap is answered and cached; a rerun with a higher cap goes on
            raise refused[0]
        for custom_id in items:
            slots = waiting[custom_id]
            if any(results[i] is not None for i, _ in slots):
                continue
            result = final.get(custom_id) or ItemResult(error="no batch result")
            for n, (index, stats) in enumerate(slots):
                results[index] = self._finish(stats, requests[index], None, LLMResponse("", failed=True, error=result.error or "no batch answer"))
                if n:  # the first was counted by the batch's own progress
                    advance(1)

    async def _settle_batched(
        self, route: _Route, custom_id: str, request: LLMRequest, result: ItemResult,
        slots: list[tuple[int, RoleUsage]], results: list[LLMResponse | None], advance: Callable[[int], None],
    ) -> None:
        """One batch answer through the live path's validation (and live re-asks when it misses its schema)."""
        assert result.completion is not None
        first_index, stats = slots[0]
        response = await self._answer(route, stats, request, first=result.completion)
        key = custom_id if self._cache is not None else None
        response = self._finish(stats, request, key, response)
        for n, (index, slot_stats) in enumerate(slots):
            results[index] = response
            if n:  # a duplicate request in the same call: answered once, counted as served by that answer
                self._ledger.record_task(request.task or request.role, response.usage, cached=True, failed=response.failed)
                slot_stats.cached_calls += 1
                advance(1)  # the first was counted by the batch's own progress

    async def aclose(self) -> None:
        for backend in {id(r.backend): r.backend for r in self._routes.values()}.values():
            await backend.aclose()
        await self._http.aclose()
        if self._cache is not None:
            self._cache.close()

    def usage_summary(self) -> dict:
        limit = self._in_flight.value
        adaptive = {"max_in_flight": limit.maximum, "in_flight_limit_now": int(limit.limit), "rate_limit_cuts": limit.cuts} if limit else {}
        return {**self._ledger.summary(), "requests_sent": self.requests_sent, **adaptive}

    # -- internals ------------------------------------------------------------------------------

    def _route(self, role: str) -> _Route:
        if role not in ROLES:
            raise ConfigError(f"unknown LLM role '{role}' (expected one of {', '.join(ROLES)})")
        if role not in self._routes:
            raise ConfigError(f"this step needs an LLM but llm.{_setting_for(role)} is 'none'; configure a backend")
        return self._routes[role]

    async def _answer(self, route: _Route, stats: RoleUsage, request: LLMRequest, *, first: Completion | None = None) -> LLMResponse:
        """The answer with schema re-asks; `first`: the first attempt's answer when it came from a batch."""
        total = Usage()
        attempt_request = request
        attempts = 1 + (self.settings.schema_retries if request.json_schema is not None else 0)
        for attempt in range(attempts):
            try:
                completion = first if attempt == 0 and first is not None else await self._send(route, stats, attempt_request)
            except _GaveUp as exc:
                return LLMResponse("", usage=total, failed=True, error=str(exc))
            total = total + completion.usage
            if request.json_schema is None:
                return LLMResponse(completion.text, usage=total)
            result = parse_structured(completion.text, request.json_schema)
            if result.ok and request.answer_check is not None and (problem := request.answer_check(result.value)) is not None:
                result = ParseResult(feedback=problem, error=f"answer rejected by the {request.task or request.role} check")
            if result.ok:
                return LLMResponse(completion.text, result.value, total)
            # Show the model its answer and what is wrong with it; the history grows by one turn.
            attempt_request = replace(
                attempt_request,
                messages=attempt_request.messages
                + (
                    ChatMessage("assistant", completion.text.strip() or "(empty answer)"),
                    ChatMessage("user", SCHEMA_FEEDBACK.format(feedback=result.feedback)),
                ),
            )
        return LLMResponse(completion.text, usage=total, failed=True, error=f"{result.error} (after {attempts} attempts)")

    async def _send(self, route: _Route, stats: RoleUsage, request: LLMRequest) -> Completion:
        """One answered request: reserve its worst-case cost, wait for the limits, retry transient errors.
        The in-flight slot is held only while a request is on the wire, not during a backoff."""
        input_estimate = approx_request_tokens(request)
        reserved = self._ledger.reserve(route.price_model, input_estimate, request.max_tokens)
        limit = self._in_flight.get()
        try:
            max_retries = self.settings.max_retries
            for attempt in range(max_retries + 1):
                if self._rpm is not None:
                    await self._rpm.acquire()
                if self._tpm is not None:
                    await self._tpm.acquire(input_estimate + request.max_tokens)
                generation = await limit.acquire()
                self.requests_sent += 1
                try:
                    completion = await route.backend.complete(request)
                except TransientError as exc:
                    limit.release()
                    if exc.rate_limited:
                        limit.rate_limited(generation)
                    if attempt == max_retries:
                        if exc.unreachable:
                            raise LLMFatalError(f"{exc}; gave up after {attempt + 1} attempts") from None
                        raise _GaveUp(f"{exc}; gave up after {attempt + 1} attempts") from None
                    stats.retries += 1
                    delay = backoff_delay(
                        attempt + 1, initial=self.settings.retry_initial_s, maximum=self.settings.retry_max_s, retry_after=exc.retry_after
                    )
                    log.info("%s request to %s: %s; retry %d/%d in %.1fs", request.role, route.spec, exc, attempt + 1, max_retries, delay)
                    await asyncio.sleep(delay)
                    continue
                except BaseException:
                    limit.release()
                    raise
                limit.release()
                limit.succeeded()
                if self._tpm is not None:
                    used = completion.usage.input_tokens + completion.usage.output_tokens
                    self._tpm.refund(max(0, input_estimate + request.max_tokens - used))
                self._ledger.record(stats, route.price_model, completion.usage)
                return completion
        finally:
            self._ledger.release(reserved)
        raise AssertionError("unreachable: the retry loop returns or raises")

    @staticmethod
    async def _settle(tasks: list[asyncio.Task[None]]) -> None:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failure = next((t.exception() for t in done if t.exception() is not None), None)
        if failure is None:
            return
        if isinstance(failure, BudgetExceeded):
            # The ledger now refuses every new request, so what is left finishes quickly.
            if pending:
                await asyncio.wait(pending)
        else:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:  # mark every exception as retrieved: no "never retrieved" noise
            if task.done() and not task.cancelled():
                task.exception()
        raise failure

    def _progress_bar(self, description: str, total: int):
        console = Console(stderr=True)
        if not self._progress or not console.is_terminal or total == 0:
            return _NoProgress()
        return _RichProgress(console, description or "LLM calls", total)


def _setting_for(role: str) -> str:
    return "facets" if role == "screener" else role


class _NoProgress:
    def __enter__(self) -> Callable[[int], None]:
        return lambda n: None

    def __exit__(self, *exc: object) -> None:
        return None


class _RichProgress:
    def __init__(self, console: Console, description: str, total: int):
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} calls/s"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._bar.add_task(description, total=total, rate="-")

    def __enter__(self) -> Callable[[int], None]:
        self._bar.start()

        shown = [0, 0.0]  # answers not yet shown, when the bar was last updated

        def advance(n: int) -> None:
            # rich takes a lock and samples the speed on every update: at hundreds of answers a second
            # that cost more than the requests, so the bar moves four times a second
            shown[0] += n
            now = time.monotonic()
            if now - shown[1] < 0.25:
                return
            self._bar.advance(self._task, shown[0])
            shown[0], shown[1] = 0, now
            speed = self._bar.tasks[0].speed
            self._bar.update(self._task, rate=f"{speed:.1f}" if speed else "-")

        self._flush = lambda: self._bar.advance(self._task, shown[0])

        return advance

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self._bar.stop()


def build_client(settings: LLMSettings, *, progress: bool = True, run_dir: Path | None = None) -> Client:
    """A client serving every role whose spec is not 'none'. Roles sharing a spec share a backend
    (one loaded local model, one connection pool). `run_dir`: where batch mode keeps its batch ids."""
    http = HttpPool(settings)
    backends: dict[BackendSpec, Backend] = {}
    routes: dict[str, _Route] = {}
    for role in ROLES:
        spec = parse_spec(settings.spec_for(role))
        if spec is None:
            continue
        if settings.batch and role in BATCH_ROLES and spec.kind not in BATCH_KINDS:
            # in-process engines batch by themselves already; a silent fallback would hide the price difference
            raise ConfigError(f"--batch needs a hosted API with a batch interface (anthropic: or openai:), but the {role} backend is "
                              f"'{spec}', which runs in this process; run it without --batch")
        if spec not in backends:
            backends[spec] = make_backend(spec, settings, http)
        routes[role] = _Route(spec, backends[spec])
    return Client(settings, routes, http, progress=progress, run_dir=run_dir)
