"""The client every stage talks to: routes a request to its role's backend, and adds the cache,
concurrency bound, rate limits, retries, schema validation, usage accounting and the spending cap.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, replace
from typing import Callable, Generic, Sequence, TypeVar

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from convoscope.errors import BudgetExceeded, ConfigError, LLMFatalError
from convoscope.llm.backends import Backend, Completion, TransientError, make_backend
from convoscope.llm.base import ChatMessage, LLMRequest, LLMResponse, Usage
from convoscope.llm.cache import ResponseCache, cache_key
from convoscope.llm.limits import TokenBucket, approx_request_tokens, backoff_delay
from convoscope.llm.parse import ParseResult, parse_structured
from convoscope.llm.settings import ROLES, BackendSpec, LLMSettings, parse_spec
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

    def current(self) -> T | None:
        """The value for the running loop, without making one."""
        return self._value if self._loop is asyncio.get_running_loop() else None


class HttpPool:
    """Shared httpx.AsyncClients per event loop, holding max_concurrency connections in all.

    httpcore scans every connection of a pool on each request and response (with a syscall per idle
    connection), so one pool of 256 connections spends more CPU on bookkeeping than on HTTP. Shards of
    at most `SHARD` connections, used round-robin, keep that scan short."""

    SHARD = 16

    def __init__(self, settings: LLMSettings):
        shards = -(-settings.max_concurrency // self.SHARD)
        per_shard = -(-settings.max_concurrency // shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        # httpx writes headers and body separately; with Nagle's algorithm on, the body then waits for
        # the server's delayed ACK (~40 ms a request against a local vLLM or llama.cpp server).
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

        def make() -> list[httpx.AsyncClient]:
            return [
                httpx.AsyncClient(timeout=settings.timeout_s, transport=httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay))
                for _ in range(shards)
            ]

        self._shards = _PerLoop(make)
        self._next = 0

    def client(self) -> httpx.AsyncClient:
        shards = self._shards.get()
        self._next = (self._next + 1) % len(shards)
        return shards[self._next]

    async def aclose(self) -> None:
        for client in self._shards.current() or []:
            await client.aclose()


@dataclass
class _Route:
    spec: BackendSpec
    backend: Backend

    @property
    def price_model(self) -> str | None:
        return None if self.backend.local else self.spec.model


class _GaveUp(Exception):
    """Retries exhausted on a transient error: the item fails, the run goes on."""


class Client:
    def __init__(self, settings: LLMSettings, routes: dict[str, _Route], http: HttpPool, *, progress: bool = True):
        self.settings = settings
        self._routes = routes
        self._http = http
        self._progress = progress
        self._cache = ResponseCache(settings.resolved_cache_dir()) if settings.cache else None
        self._ledger = UsageLedger(PriceTable(settings.prices), settings.max_cost_usd)
        self._semaphore = _PerLoop(lambda: asyncio.Semaphore(settings.max_concurrency))
        self._rpm = TokenBucket(settings.requests_per_minute) if settings.requests_per_minute else None
        self._tpm = TokenBucket(settings.tokens_per_minute) if settings.tokens_per_minute else None
        self.requests_sent = 0  # requests handed to a backend, retries included; cache hits excluded

    # -- the LLMClient interface -------------------------------------------------------------

    async def complete(self, request: LLMRequest) -> LLMResponse:
        route = self._route(request.role)
        stats = self._ledger.role(request.role, str(route.spec))
        stats.calls += 1
        key = cache_key(route.spec.kind, route.spec.model, request) if self._cache else None
        task = request.task or request.role
        if key is not None and (hit := self._cache.get(key)) is not None:
            stats.cached_calls += 1
            self._ledger.record_task(task, hit.usage, cached=True, failed=False)
            return LLMResponse(hit.text, hit.parsed, hit.usage, cached=True)
        response = await self._answer(route, stats, request)
        self._ledger.record_task(task, response.usage, cached=False, failed=response.failed)
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
        with (self._progress_bar(description, len(requests)) if show_progress else _NoProgress()) as advance:

            async def run(index: int, request: LLMRequest) -> None:
                results[index] = await self.complete(request)
                advance()

            tasks = [asyncio.create_task(run(i, r)) for i, r in enumerate(requests)]
            if tasks:
                await self._settle(tasks)
        return results  # type: ignore[return-value]  # every slot is filled once _settle returns

    async def aclose(self) -> None:
        for backend in {id(r.backend): r.backend for r in self._routes.values()}.values():
            await backend.aclose()
        await self._http.aclose()
        if self._cache is not None:
            self._cache.close()

    def usage_summary(self) -> dict:
        return {**self._ledger.summary(), "requests_sent": self.requests_sent}

    # -- internals ------------------------------------------------------------------------------

    def _route(self, role: str) -> _Route:
        if role not in ROLES:
            raise ConfigError(f"unknown LLM role '{role}' (expected one of {', '.join(ROLES)})")
        if role not in self._routes:
            raise ConfigError(f"this step needs an LLM but llm.{_setting_for(role)} is 'none'; configure a backend")
        return self._routes[role]

    async def _answer(self, route: _Route, stats: RoleUsage, request: LLMRequest) -> LLMResponse:
        total = Usage()
        attempt_request = request
        attempts = 1 + (self.settings.schema_retries if request.json_schema is not None else 0)
        for _ in range(attempts):
            try:
                completion = await self._send(route, stats, attempt_request)
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
        """One answered request: reserve its worst-case cost, wait for the limits, retry transient errors."""
        input_estimate = approx_request_tokens(request)
        reserved = self._ledger.reserve(route.price_model, input_estimate, request.max_tokens)
        try:
            async with self._semaphore.get():
                max_retries = self.settings.max_retries
                for attempt in range(max_retries + 1):
                    if self._rpm is not None:
                        await self._rpm.acquire()
                    if self._tpm is not None:
                        await self._tpm.acquire(input_estimate + request.max_tokens)
                    self.requests_sent += 1
                    try:
                        completion = await route.backend.complete(request)
                    except TransientError as exc:
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
    def __enter__(self) -> Callable[[], None]:
        return lambda: None

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

    def __enter__(self) -> Callable[[], None]:
        self._bar.start()

        def advance() -> None:
            self._bar.advance(self._task)
            speed = self._bar.tasks[0].speed
            self._bar.update(self._task, rate=f"{speed:.1f}" if speed else "-")

        return advance

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def build_client(settings: LLMSettings, *, progress: bool = True) -> Client:
    """A client serving every role whose spec is not 'none'. Roles sharing a spec share a backend
    (one loaded local model, one connection pool)."""
    http = HttpPool(settings)
    backends: dict[BackendSpec, Backend] = {}
    routes: dict[str, _Route] = {}
    for role in ROLES:
        spec = parse_spec(settings.spec_for(role))
        if spec is None:
            continue
        if spec not in backends:
            backends[spec] = make_backend(spec, settings, http)
        routes[role] = _Route(spec, backends[spec])
    return Client(settings, routes, http, progress=progress)
