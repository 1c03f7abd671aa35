"""Opening the on-disk caches (LLM responses, vectors): SQLite in WAL mode, safe when several
processes open the same file at once, and private to the user (directory 0700, files 0600)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from convoscope.private_files import PRIVATE_FILE_MODE, is_private, make_private_dirs

# SQLite's companion files of a WAL database; it creates them with the database file's mode
_COMPANIONS = ("-wal", "-shm", "-journal")


def connect_wal(path: Path, timeout: float = 60.0, **kwargs) -> sqlite3.Connection:
    """A connection in WAL mode. Switching a new database to WAL takes an exclusive lock that SQLite
    does not wait for (busy_timeout does not apply), so two processes creating the same cache at the
    same moment can get "database is locked"; we retry until `timeout`."""
    _prepare_private_file(Path(path))
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


def _prepare_private_file(path: Path) -> None:
    """Make the database file exist with mode 0600 before SQLite opens it, so that its -wal and -shm
    files (created with the same mode) are private too; files left 0644 by older versions are
    tightened. Only files we own are changed."""
    make_private_dirs(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE))  # no O_TRUNC: may exist
    except OSError:
        return  # e.g. a read-only location: let sqlite3 report it
    for candidate in [path, *(path.with_name(path.name + suffix) for suffix in _COMPANIONS)]:
        try:
            st = candidate.stat()
        except FileNotFoundError:
            continue
        if os.name == "posix" and not is_private(st.st_mode) and st.st_uid == os.getuid():
            os.chmod(candidate, PRIVATE_FILE_MODE)


def drop_entries_before(db: sqlite3.Connection, table: str, version: int) -> None:
    """Delete every row of a cache whose keys were made by an older scheme (PRAGMA user_version below
    `version`), then mark the file as `version`. Old entries could never be hit again, and those keyed
    by plain hashes of the text would still let anyone holding the file test a guessed text."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= version:
        return
    with db:
        db.execute("BEGIN IMMEDIATE")  # one process purges; the others then see the new version
        purge = db.execute("PRAGMA user_version").fetchone()[0] < version
        if purge:
            db.execute(f"DELETE FROM {table}")
            db.execute(f"PRAGMA user_version={int(version)}")
    if purge:
        db.execute("VACUUM")  # deleted rows stay readable in free pages until the file is rewritten
