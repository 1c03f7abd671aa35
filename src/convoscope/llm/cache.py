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

from convoscope.llm.base import LLMRequest, Usage
from convoscope.secrets_key import keyed_hash, secret_key
from convoscope.sqlite_wal import connect_wal, drop_entries_before

CACHE_FILE = "llm-cache.sqlite3"
_KEY_VERSION = 3  # bump when the meaning of a cached answer changes (2: keyed with the secret key; 3: no prefill field)


def cache_key(backend: str, model: str, request: LLMRequest) -> str:
    payload = {
        "v": _KEY_VERSION,
        "backend": backend,
        "model": model,
        "messages": [[m.role, m.content] for m in request.messages],
        "system": request.system,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "schema": request.json_schema,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return keyed_hash(secret_key(), "convoscope llm cache", blob.encode())


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    parsed: Any
    usage: Usage


class ResponseCache:
    def __init__(self, directory: Path):
        secret_key()  # a missing or unsafe key is reported now, not at the first request
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
        row = self._db.execute(
            "SELECT text, parsed, input_tokens, output_tokens FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        text, parsed, input_tokens, output_tokens = row
        return CachedAnswer(text, json.loads(parsed) if parsed is not None else None, Usage(input_tokens, output_tokens))

    def put(self, key: str, text: str, parsed: Any, usage: Usage) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
            (key, text, json.dumps(parsed) if parsed is not None else None, usage.input_tokens, usage.output_tokens, time.time()),
        )

    def close(self) -> None:
        self._db.close()
