"""The run directory: the only code that knows file names.

Every artifact is written atomically (a temporary file in the same directory, then `os.replace`), and
its stage's record in `manifest.json` is written after the artifact, so a run killed at any point
never leaves an artifact that a later run takes as complete. A stage is complete when the manifest
records it with the fingerprint of its current inputs and settings and all its files exist.

A run directory holds per-conversation data, so it is private: directories the store creates are 0700
and every file it writes is 0600 (set per file, never through the process-wide umask).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from convoscope.errors import RunDirError
from convoscope.private_files import PRIVATE_FILE_MODE, make_private_dirs

MANIFEST = "manifest.json"
LOCK = ".convoscope.lock"  # who is writing this run directory: see RunLock
# Every open-text facet after the primary one gets its own clusters, hierarchy and map in
# hierarchies/<facet>/, a run directory of its own whose shared inputs are read from the main run.
FACET_DIR = "hierarchies"
# Artifacts written once per run (before any facet's clustering), read through by facet stores.
SHARED_ARTIFACTS = frozenset({"conversations", "raw_text", "selection", "facets"})


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able settings and upstream fingerprints."""
    payload = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(payload).hexdigest()[:32]


@contextmanager
def _atomic_path(final: Path) -> Iterator[Path]:
    make_private_dirs(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600, but a writer may recreate it; the mode is set before the file
        # gets its final name, so it is never visible under that name with a wider one
        os.chmod(tmp_path, PRIVATE_FILE_MODE)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def prepare_run_dir(root: Path) -> None:
    """Create the run directory (0700), or say in one line why it cannot be one."""
    if root.exists() and not root.is_dir():
        raise RunDirError(f"{root}: is a file, not a run directory; give --out a directory (new, or an earlier run to resume)")
    try:
        make_private_dirs(root)
    except OSError as e:
        raise RunDirError(f"{root}: cannot create the run directory ({e.strerror or e})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise RunDirError(f"{root}: cannot write to the run directory (permission denied)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """Exclusive hold on a run directory while a run (or `assign`) writes it: a context manager.

    The lock is `flock` on RUN/.convoscope.lock (0600, like every file of the run), which names its holder
    (pid, host, start time) for the message a second process gets: RunDirError, exit code 2. The kernel
    releases an flock when its process dies, so a lock file still naming a holder that no longer holds it
    was left by a run that was killed: it is taken over, with a note. On a filesystem without flock the
    named holder decides: a live pid on this host holds the directory. A directory the lock created and
    that holds nothing else when it is released is removed (e.g. after a missing input)."""

    def __init__(self, root: str | Path, *, console: Any = None):
        self.root = Path(root)
        self.console = console
        self.note: str | None = None  # set when a stale lock was taken over
        self._fd: int | None = None
        self._created = False

    @property
    def path(self) -> Path:
        return self.root / LOCK

    def __enter__(self) -> "RunLock":
        self._created = not self.root.exists()
        prepare_run_dir(self.root)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        except OSError as e:
            raise RunDirError(f"{self.root}: cannot write to the run directory ({e.strerror or e})") from None
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            holder = self._read(fd)
            if not self._flock(fd, holder):
                holder = self._read(fd) or holder  # the holder may have written itself since
                raise RunDirError(f"{self.root}: in use by another convoscope process ({self._describe(holder)}); "
                                  "wait for it to finish, or give another --out")
            if holder:
                self.note = (f"{self.root}: took over the lock of a run that ended without releasing it "
                             f"({self._describe(holder)}, no longer running)")
                if self.console is not None:
                    from rich.markup import escape

                    self.console.print(f"[yellow]note:[/] {escape(self.note)}", highlight=False)
            me = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty lock file names no holder
        finally:
            os.close(self._fd)  # releases the flock
            self._fd = None
        if self._created:
            try:
                if [p.name for p in self.root.iterdir()] == [LOCK]:
                    self.path.unlink()
                    self.root.rmdir()
            except OSError:
                pass

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _flock(fd: int, holder: dict[str, Any]) -> bool:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
        # no flock on this filesystem: a live holder on this host keeps the directory
        pid = holder.get("pid")
        return not (isinstance(pid, int) and holder.get("host") == socket.gethostname() and pid != os.getpid() and _pid_alive(pid))

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        if not holder:
            return "holder unknown"
        return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started_at', '?')}"


def holds_run_lock(func):
    """Decorator: `func(input, out_dir, ...)` runs inside `RunLock(out_dir)` (notes go to its `console`)."""
    import functools
    import inspect

    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        console = bound.arguments.get("console")
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        with RunLock(bound.arguments["out_dir"], console=console):
            return func(*args, **kwargs)

    return wrapper


class RunStore:
    """Reads and writes one run directory. Artifacts are addressed by name, never by path.

    A facet store (`facet_store`) holds one extra hierarchy; it writes its own artifacts and manifest
    and reads the shared ones (SHARED_ARTIFACTS, and the run's manifest fields) from its parent run."""

    def __init__(self, root: str | Path, *, create: bool = False, parent: "RunStore | None" = None):
        self.root = Path(root)
        if create:
            prepare_run_dir(self.root)
        elif not (self.root / MANIFEST).exists():
            from convoscope.errors import ConvoscopeError

            raise ConvoscopeError(f"{self.root}: not a convoscope run directory (no {MANIFEST}); run `convoscope run` first")
        self._manifest = self._load_manifest()
        self.parent = parent
        if parent is None and self._manifest.get("parent_run"):
            self.parent = RunStore(self.root / self._manifest["parent_run"])

    # -- hierarchies of other facets ----------------------------------------------------------------
    def facet_store(self, facet: str, *, create: bool = False) -> "RunStore":
        """The store of the hierarchy built on `facet` (not the primary one)."""
        root = self.root / FACET_DIR / facet
        if not create and not (root / MANIFEST).exists():
            from convoscope.errors import ConvoscopeError

            held = ", ".join(self.facets()) or "none"
            raise ConvoscopeError(f"{self.root}: this run has no hierarchy for facet '{facet}' (it has: {held})")
        sub = RunStore(root, create=create, parent=self)
        if create and "parent_run" not in sub._manifest:
            sub.update_manifest(parent_run="../..", facet=facet)
        return sub

    def facets(self) -> list[str]:
        """Facets this run holds a hierarchy for, the primary first."""
        return list(self.manifest.get("hierarchy_facets") or [self.manifest.get("facet") or "request"])

    def for_facet(self, facet: str | None) -> "RunStore":
        """This run's store for `facet` (None: this store; a facet store asks its run for other facets)."""
        if facet is None or facet == (self._manifest.get("facet") if self.parent is not None else self.facets()[0]):
            return self
        if self.parent is not None:
            return self.parent.for_facet(facet)
        if facet not in self.facets():
            from convoscope.errors import ConvoscopeError

            raise ConvoscopeError(f"{self.root}: this run has no hierarchy for facet '{facet}' (it has: {', '.join(self.facets())})")
        return self.facet_store(facet)

    # -- finished or not -------------------------------------------------------------------------
    STAGE_ORDER = ("ingest", "screen", "facets", "embed", "cluster", "name", "hierarchy", "privacy", "map", "aggregates")

    def require_finished(self) -> None:
        """Raise RunDirError naming the first missing stage and the command that resumes the run, unless this
        run (or facet hierarchy) has its published aggregates (the last stage)."""
        if self.has("json:aggregates"):
            return
        done = self.manifest.get("stages", {})
        missing = next((s for s in self.STAGE_ORDER if s not in done and s != "screen"), "aggregates")
        finished = [s for s in self.STAGE_ORDER if s in done]
        run_root = self.parent.root if self.parent is not None else self.root
        source = self.manifest.get("input") or "INPUT"
        import shlex

        raise RunDirError(
            f"{self.root}: the run is unfinished: it stopped before the {missing} stage "
            f"(finished: {', '.join(finished) or 'none'}). Resume it with the command that started it, "
            f"e.g. `{shlex.join(['convoscope', 'run', str(source), '--out', str(run_root)])}` (finished stages are kept)")

    # -- manifest -------------------------------------------------------------------------------
    def _load_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if path.exists():
            return json.loads(path.read_text())
        return {"stages": {}}

    @property
    def manifest(self) -> dict[str, Any]:
        if self.parent is None:
            return self._manifest
        # a facet store: the run's fields (input, config, key id...) with this store's own on top
        merged = {**self.parent.manifest, **self._manifest}
        merged["stages"] = {**self.parent.manifest.get("stages", {}), **self._manifest.get("stages", {})}
        return merged

    def update_manifest(self, **fields: Any) -> None:
        self._manifest.update(fields)
        self._write_manifest()

    def remove_manifest_fields(self, *names: str) -> None:
        if any(name in self._manifest for name in names):
            for name in names:
                self._manifest.pop(name, None)
            self._write_manifest()

    def _write_manifest(self) -> None:
        with _atomic_path(self.root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(self._manifest, indent=2, sort_keys=True, default=str))

    def stage_complete(self, stage: str, fp: str) -> bool:
        rec = self._manifest["stages"].get(stage)
        if not rec or rec.get("fingerprint") != fp:
            return False
        return all(self._file(name).exists() for name in rec.get("artifacts", []))

    def stage_seconds(self) -> dict[str, float | None]:
        """Seconds of each stage this store ran itself (a facet store: not the shared ones)."""
        return {name: rec.get("seconds") for name, rec in self._manifest["stages"].items()}

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        return self.manifest["stages"].get(stage)

    def stage_fingerprint(self, stage: str) -> str | None:
        rec = self.stage_record(stage)
        return rec.get("fingerprint") if rec else None

    def mark_complete(self, stage: str, fp: str, artifacts: list[str], *, seconds: float, **info: Any) -> None:
        self._manifest["stages"][stage] = {
            "fingerprint": fp,
            "artifacts": artifacts,
            "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **info,
        }
        self._write_manifest()

    # -- artifacts ------------------------------------------------------------------------------
    _SUFFIX = {"table": ".parquet", "array": ".npy", "json": ".json"}

    def _file(self, name: str) -> Path:
        kind, _, base = name.partition(":")
        if self.parent is not None and base in SHARED_ARTIFACTS:
            return self.parent._file(name)
        return self.root / f"{base}{self._SUFFIX[kind]}"

    def has(self, name: str) -> bool:
        return self._file(name).exists()

    def write_table(self, name: str, table: pa.Table) -> str:
        key = f"table:{name}"
        with _atomic_path(self._file(key)) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return key

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self._file(f"table:{name}"), columns=columns)

    def write_array(self, name: str, array: np.ndarray) -> str:
        key = f"array:{name}"
        with _atomic_path(self._file(key)) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        return key

    @contextmanager
    def array_writer(self, name: str, shape: tuple[int, ...], dtype: Any) -> Iterator[np.ndarray]:
        """Write an array block by block: yields a writable memory map of the final `.npy` (a standard
        file, read back by `read_array`), which gets its name only when the block exits without error,
        so a large artifact never has to be in memory at once and a crash leaves no complete-looking file."""
        with _atomic_path(self._file(f"array:{name}")) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            try:
                yield array
                array.flush()
            finally:
                del array  # our mapping; renaming a mapped file is safe on POSIX

    def read_array(self, name: str, mmap: bool = True) -> np.ndarray:
        return np.load(self._file(f"array:{name}"), mmap_mode="r" if mmap else None, allow_pickle=False)

    def write_json(self, name: str, obj: Any) -> str:
        key = f"json:{name}"
        with _atomic_path(self._file(key)) as tmp:
            tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str))
        return key

    def read_json(self, name: str) -> Any:
        return orjson.loads(self._file(f"json:{name}").read_bytes())
