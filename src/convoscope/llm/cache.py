"""Persistent response cache: SQLite in WAL mode, shared by runs and processes.

Only a key and the response are stored, never the prompt: prompts carry conversation text, and the
cache lives in a user directory that outlives any run. The key is an HMAC of the request with the
user's secret key (convoscope.secrets_key), not a plain hash: with a plain hash, anyone holding the
file could test whether a guessed conversation was processed. The file is private (0600).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from convoscope.llm.base import LLMRequest, Usage
from convoscope.secrets_key import keyed_hash, secret_key
from convoscope.sqlite_wal import connect_wal, drop_entries_before

CACHE_FILE = "llm-cache.sqlite3"
_KEY_VERSION = 3  # bump when the meaning of a cached answer changes (2: keyed with the secret key; 3: no prefill field)


_SCHEMA_BLOBS: dict[int, tuple[Any, bytes]] = {}  # id(schema) -> (schema, its canonical JSON): stages reuse one schema object


def _schema_blob(schema: dict[str, Any] | None) -> bytes:
    if schema is None:
        return b"null"
    entry = _SCHEMA_BLOBS.get(id(schema))
    if entry is None or entry[0] is not schema:  # holding the schema keeps its id from being reused
        if len(_SCHEMA_BLOBS) > 256:
            _SCHEMA_BLOBS.clear()
        entry = _SCHEMA_BLOBS[id(schema)] = (schema, orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    return entry[1]


def cache_key(backend: str, model: str, request: LLMRequest, key: bytes | None = None) -> str:
    """The keyed hash of everything that decides the answer. `key`: the secret key when the caller
    already holds it (the client reads it once); else it is read now."""
    payload = {
        "v": _KEY_VERSION,
        "backend": backend,
        "model": model,
        "messages": [[m.role, m.content] for m in request.messages],
        "system": request.system,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    blob = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS) + b"\0" + _schema_blob(request.json_schema)
    return keyed_hash(key if key is not None else secret_key(), "convoscope llm cache", blob)


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    parsed: Any
    usage: Usage


class ResponseCache:
    """Writes are buffered and written together (one transaction of up to `FLUSH_EVERY` rows, or what
    came in `FLUSH_AFTER_S`, and at close): one write transaction per answer cost more CPU than the
    HTTP request. A kill -9 loses at most the unflushed answers, which a rerun asks again."""

    FLUSH_EVERY = 256
    FLUSH_AFTER_S = 2.0

    def __init__(self, directory: Path):
        self.key = secret_key()  # a missing or unsafe key is reported now, not at the first request
        self._pending: dict[str, tuple[str, str | None, int, int, float]] = {}
        self._oldest_pending = 0.0
        self.path = directory / CACHE_FILE  # connect_wal creates the directory 0700 and the file 0600
        # isolation_level=None: autocommit, so each put is one short write transaction.
        self._db = connect_wal(self.path, timeout=30, isolation_level=None, check_same_thread=False)  # several processes may write at once
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable on commit except at power loss
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, text TEXT NOT NULL, parsed TEXT,"
            " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )
        drop_entries_before(self._db, "responses", _KEY_VERSION)  # entries under plain sha256 keys

    def get(self, key: str) -> CachedAnswer | None:
        if (pending := self._pending.get(key)) is not None:
            text, parsed_json, input_tokens, output_tokens, _ = pending
            return CachedAnswer(text, json.loads(parsed_json) if parsed_json is not None else None, Usage(input_tokens, output_tokens))
        row = self._db.execute(
            "SELECT text, parsed, input_tokens, output_tokens FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        text, parsed, input_tokens, output_tokens = row
        return CachedAnswer(text, json.loads(parsed) if parsed is not None else None, Usage(input_tokens, output_tokens))

    def put(self, key: str, text: str, parsed: Any, usage: Usage) -> None:
        now = time.monotonic()
        if not self._pending:
            self._oldest_pending = now
        self._pending[key] = (text, json.dumps(parsed) if parsed is not None else None, usage.input_tokens, usage.output_tokens, time.time())
        if len(self._pending) >= self.FLUSH_EVERY or now - self._oldest_pending >= self.FLUSH_AFTER_S:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows = [(key, *values) for key, values in self._pending.items()]
        with self._db:  # one transaction (isolation_level=None otherwise autocommits each statement)
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)", rows)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._db.close()
