"""The run directory: the only code that knows file names.

Every artifact is written atomically (a temporary file in the same directory, then `os.replace`), and
its stage's record in `manifest.json` is written after the artifact, so a run killed at any point
never leaves an artifact that a later run takes as complete. A stage is complete when the manifest
records it with the fingerprint of its current inputs and settings and all its files exist.

A run directory holds per-conversation data, so it is private: directories the store creates are 0700
and every file it writes is 0600 (set per file, never through the process-wide umask).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from convoscope.private_files import PRIVATE_FILE_MODE, make_private_dirs

MANIFEST = "manifest.json"
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


class RunStore:
    """Reads and writes one run directory. Artifacts are addressed by name, never by path.

    A facet store (`facet_store`) holds one extra hierarchy; it writes its own artifacts and manifest
    and reads the shared ones (SHARED_ARTIFACTS, and the run's manifest fields) from its parent run."""

    def __init__(self, root: str | Path, *, create: bool = False, parent: "RunStore | None" = None):
        self.root = Path(root)
        if create:
            make_private_dirs(self.root)
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

    def read_array(self, name: str, mmap: bool = True) -> np.ndarray:
        return np.load(self._file(f"array:{name}"), mmap_mode="r" if mmap else None, allow_pickle=False)

    def write_json(self, name: str, obj: Any) -> str:
        key = f"json:{name}"
        with _atomic_path(self._file(key)) as tmp:
            tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str))
        return key

    def read_json(self, name: str) -> Any:
        return orjson.loads(self._file(f"json:{name}").read_bytes())
