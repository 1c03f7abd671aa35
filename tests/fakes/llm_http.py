"""A small HTTP/1.1 server on loopback (asyncio, in a background thread) with injectable faults:
the base of the fake LLM servers. asyncio rather than http.server so that hundreds of concurrent
keep-alive connections cost nothing (the overhead benchmark runs 256)."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Fault:
    kind: str  # "status" | "drop" | "malformed" | "slow"
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0


class FakeHTTPServer:
    """Subclasses implement `route(method, path, headers, body) -> Reply`. Use as a context manager."""

    def __init__(self, *, latency: float = 0.0, api_key: str | None = None):
        self.latency = latency  # seconds added to every request
        self.api_key = api_key  # when set, requests with another key get 401
        self.requests: list[dict[str, Any]] = []  # JSON bodies, in arrival order
        self.request_headers: list[dict[str, str]] = []
        self.request_count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        # a rate limit by concurrency, as hosted APIs apply per account: requests beyond it get a 429
        self.concurrency_limit: int | None = None
        self.rate_limited = 0
        self._faults: deque[Fault] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    # -- faults, applied to the next requests in arrival order ---------------------------------

    def fail_next(self, n: int = 1, *, status: int = 500, retry_after: str | int | None = None) -> None:
        self._faults.extend(Fault("status", status, None if retry_after is None else str(retry_after)) for _ in range(n))

    def drop_next(self, n: int = 1) -> None:
        """Close the connection without an answer."""
        self._faults.extend(Fault("drop") for _ in range(n))

    def malformed_next(self, n: int = 1) -> None:
        """Answer 200 with a body that is not JSON."""
        self._faults.extend(Fault("malformed") for _ in range(n))

    def slow_next(self, n: int = 1, *, delay: float = 1.0) -> None:
        self._faults.extend(Fault("slow", delay=delay) for _ in range(n))

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeHTTPServer":
        started = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=2048)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name=type(self).__name__, daemon=True)
        self._thread.start()
        started.wait()
        return self

    async def _shutdown(self) -> None:
        """Close the listener and every open connection, and let their handlers end on their own."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = asyncio.all_tasks() - {asyncio.current_task()}
        if handlers:
            await asyncio.wait(handlers, timeout=2)

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # -- protocol ----------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                reply = await self._answer(method, path, headers, body)
                if reply is None:  # a "drop" fault
                    writer.transport.abort()
                    return
                status, reply_headers, payload = reply
                head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\ncontent-length: {len(payload)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in reply_headers.items())
                writer.write(head.encode("latin-1") + b"\r\n" + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply | None:
        self.request_count += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                if headers.get("content-type", "").startswith("multipart/form-data"):
                    parsed = multipart_fields(headers["content-type"], body)
                else:
                    parsed = orjson.loads(body) if body else {}
            except (orjson.JSONDecodeError, ValueError):
                return json_reply(400, {"error": {"message": "body is not JSON"}})
            self.requests.append(parsed)
            self.request_headers.append(headers)
            if self.concurrency_limit is not None and self.in_flight > self.concurrency_limit:
                self.rate_limited += 1
                return json_reply(429, self.error_body(429, "too many concurrent requests"))
            if self.latency:
                await asyncio.sleep(self.latency)
            fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                if fault.kind == "drop":
                    return None
                if fault.kind == "malformed":
                    return 200, {"content-type": "application/json"}, b'{"choices": [ {"message": '
                if fault.kind == "slow":
                    await asyncio.sleep(fault.delay)
                if fault.kind == "status":
                    extra = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
                    return json_reply(fault.status, self.error_body(fault.status, "injected fault"), extra)
            return self.route(method, path, headers, parsed)
        finally:
            self.in_flight -= 1

    def route(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "code": status}}


def multipart_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart/form-data body as {field: str, or bytes for a file}, parsed by the standard library."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(f"content-type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = payload if part.get_filename() else payload.decode()
    return fields


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"content-type": "application/json", **(headers or {})}, orjson.dumps(body)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable", 529: "Overloaded"}
