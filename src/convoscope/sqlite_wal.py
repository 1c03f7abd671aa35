"""Opening the on-disk caches (LLM responses, vectors): SQLite in WAL mode, safe when several
processes open the same file at once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect_wal(path: Path, timeout: float = 60.0, **kwargs) -> sqlite3.Connection:
    """A connection in WAL mode. Switching a new database to WAL takes an exclusive lock that SQLite
    does not wait for (busy_timeout does not apply), so two processes creating the same cache at the
    same moment can get "database is locked"; we retry until `timeout`."""
    db = sqlite3.connect(path, timeout=timeout, **kwargs)
    db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
