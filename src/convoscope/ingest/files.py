"""Finding input files and opening them as byte streams (gzip, BOM and encoding handled here).

An input is a local path, or a URI of any pyarrow filesystem (`s3://bucket/prefix/`, `gs://`, `hdfs://`,
`abfs://`): `input_location` turns either into what the readers take, a `Path` or a `RemoteFile`, and
the same readers, checks and error messages apply to both. Credentials come from the environment, as
pyarrow finds them (for S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role;
AWS_ENDPOINT_URL for an S3-compatible store).
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convoscope.errors import InputError

from .record import RecordError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
_GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}
_SNIFF_BYTES = 1 << 16
_DISCARD_CHUNK = 1 << 20  # an oversize line is skipped in chunks of this size, never held whole


# "s3://bucket/key", or the same after pathlib collapsed its "//" ("s3:/bucket/key": the CLI's arguments are
# Paths). Two letters at least, so a Windows drive ("C:/") is never taken for a scheme.
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(.*)$", re.DOTALL)


class RemoteFile:
    """A file or directory on a pyarrow filesystem, with what the readers use of a Path: `name`, `str()`
    (the URI, in every message), `is_file()` / `is_dir()`, and ways to open it."""

    def __init__(self, uri: str, filesystem: Any, fs_path: str, query: str = ""):
        self.uri = uri
        self.filesystem = filesystem
        self.fs_path = fs_path.rstrip("/")
        self._scheme = uri.split("://", 1)[0]
        self._query = query  # e.g. "?endpoint_override=...": kept on every file under a directory

    @classmethod
    def from_uri(cls, uri: str) -> "RemoteFile":
        from pyarrow import fs

        try:
            filesystem, fs_path = fs.FileSystem.from_uri(uri)
        except (OSError, ValueError) as e:  # unknown scheme, bad URI, a filesystem pyarrow was built without
            raise InputError(f"cannot open this location: {_first_line(e)}", path=uri) from None
        query = "?" + uri.split("?", 1)[1] if "?" in uri else ""
        return cls(uri, filesystem, fs_path, query)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RemoteFile({self.uri!r})"

    @property
    def name(self) -> str:
        return self.fs_path.rsplit("/", 1)[-1]

    def child(self, fs_path: str) -> "RemoteFile":
        return RemoteFile(f"{self._scheme}://{fs_path}{self._query}", self.filesystem, fs_path, self._query)

    def info(self) -> Any:
        try:
            return self.filesystem.get_file_info(self.fs_path)
        except OSError as e:  # no credentials, access denied, no such bucket, unreachable endpoint
            raise InputError(f"cannot read: {_first_line(e)}", path=self.uri) from None

    def is_file(self) -> bool:
        from pyarrow import fs

        return bool(self.info().type == fs.FileType.File)

    def is_dir(self) -> bool:
        from pyarrow import fs

        return bool(self.info().type == fs.FileType.Directory)

    def files_under(self) -> list[Any]:
        """FileInfo of every file under this directory."""
        from pyarrow import fs

        try:
            infos = self.filesystem.get_file_info(fs.FileSelector(self.fs_path, recursive=True))
        except OSError as e:
            raise InputError(f"cannot list: {_first_line(e)}", path=self.uri) from None
        return [i for i in infos if i.type == fs.FileType.File]

    def open_stream(self) -> Any:
        """A sequential byte stream, not decompressed by pyarrow (gzip is detected and bounded in open_bytes)."""
        try:
            return self.filesystem.open_input_stream(self.fs_path, compression=None)
        except OSError as e:
            raise InputError(f"cannot read file: {_first_line(e)}", path=self.uri) from None

    def open_random(self) -> Any:
        """A seekable file (Parquet reads its footer first)."""
        try:
            return self.filesystem.open_input_file(self.fs_path)
        except OSError as e:
            raise InputError(f"cannot read file: {_first_line(e)}", path=self.uri) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_remote(source: str | Path | RemoteFile) -> bool:
    """Whether `source` names a location on a pyarrow filesystem rather than a local path (an existing
    local path always wins; `file://` is local)."""
    if isinstance(source, RemoteFile):
        return True
    text = str(source)
    match = _URI.match(text)
    return match is not None and match.group(1).lower() != "file" and not Path(text).exists()


def input_location(source: str | Path | RemoteFile) -> Path | RemoteFile:
    """A local Path, or a RemoteFile for a URI such as `s3://bucket/prefix/` (also as pathlib left it: `s3:/bucket/prefix`)."""
    if isinstance(source, RemoteFile):
        return source
    if is_remote(source):
        scheme, rest = _URI.match(str(source)).groups()  # type: ignore[union-attr]  # is_remote matched it
        return RemoteFile.from_uri(f"{scheme}://{rest}")
    text = str(source)
    return Path(text[len("file://"):]) if text.startswith("file://") else Path(source)


def file_stats(source: str | Path | RemoteFile) -> list[tuple[str, int, int]]:
    """(file, size, mtime in ns) of every file of an input: what its fingerprint is made of (a change to any
    file changes it). Local: every file under a directory; remote: every object under the prefix."""
    location = input_location(source)
    if isinstance(location, RemoteFile):
        infos = location.files_under() if location.is_dir() else [location.info()]
        return sorted((location.child(i.path).uri, int(i.size or 0), int(i.mtime_ns or 0)) for i in infos)
    files = sorted(p for p in location.rglob("*") if p.is_file()) if location.is_dir() else [location]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def list_files(path: "Path | RemoteFile") -> list[tuple[Any, str]]:
    """(file, display name) pairs: the file itself, or every supported file under a directory, sorted."""
    if isinstance(path, RemoteFile):
        return _list_remote(path)
    if path.is_file():
        return [(path, path.name)]
    if path.is_dir():
        found = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts) and supported(p)
        )
        if not found:
            raise InputError(f"no supported files ({', '.join(SUFFIXES)}, optionally .gz) in directory", path=str(path))
        return [(p, p.relative_to(path).as_posix()) for p in found]
    raise InputError("no such file or directory", path=str(path))


def _list_remote(location: RemoteFile) -> list[tuple[Any, str]]:
    """As for a local directory: supported files, none under a hidden name, in the order of their paths' parts."""
    from pyarrow import fs

    info = location.info()
    if info.type == fs.FileType.File:
        return [(location, location.name)]
    if info.type != fs.FileType.Directory:
        raise InputError("no such file or directory", path=str(location))
    base = location.fs_path + "/"
    found = []
    for item in location.files_under():
        relative = item.path[len(base):] if item.path.startswith(base) else item.path
        parts = tuple(relative.split("/"))
        if not any(part.startswith(".") for part in parts) and supported(Path(parts[-1])):
            found.append((parts, item.path))
    if not found:
        raise InputError(f"no supported files ({', '.join(SUFFIXES)}, optionally .gz) in directory", path=str(location))
    return [(location.child(fs_path), "/".join(parts)) for parts, fs_path in sorted(found)]


def supported(path: Path) -> bool:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(SUFFIXES)


class StreamCut(Exception):
    """The rest of a file cannot be read (compressed data truncated or corrupt, or more than
    max_decompressed_bytes); everything read before this point is valid."""

    def __init__(self, reason: str, hint: str):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class RecordTooLarge(Exception):
    """The JSON element being parsed has grown past its byte budget (see GuardedRaw.start_record)."""


class GuardedRaw(io.RawIOBase):
    """A raw stream that counts the bytes it delivers and stops, with StreamCut or RecordTooLarge, at the limits.

    Limits are checked as bytes arrive, so a bomb or a giant JSON element is stopped before it is held in memory."""

    def __init__(self, inner: io.BufferedIOBase | io.RawIOBase, *, compressed: bool, max_total: int):
        super().__init__()
        self._inner = inner
        self._compressed = compressed
        self._max_total = max_total  # 0 = no limit
        self.total = 0
        self._record_start = 0
        self._max_record = 0  # 0 = not counting a record

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        try:
            n = self._inner.readinto(buffer) or 0
        except (EOFError, OSError, zlib.error) as e:
            if not self._compressed:
                raise
            raise StreamCut(
                f"compressed data ends early or is corrupt ({e}); the rest of the file was not read",
                "pass --skip-invalid to keep the conversations read before this point",
            ) from None
        self.total += n
        if self._max_total and self.total > self._max_total:
            raise StreamCut(
                f"decompresses to more than {human_bytes(self._max_total)} (ingest.max_decompressed_bytes), "
                "a decompression bomb?; the rest of the file was not read",
                "if the file is genuine, raise max_decompressed_bytes in the [ingest] table of a --config file "
                "(0 = no limit); --skip-invalid keeps the conversations read before this point",
            )
        if self._max_record and self.total - self._record_start > self._max_record:
            raise RecordTooLarge()
        return n

    def start_record(self, max_bytes: int) -> None:
        """Count the bytes from here against one record's budget (0 = stop counting)."""
        self._record_start = self.total
        self._max_record = max_bytes

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_bytes(path: "Path | RemoteFile", max_decompressed_bytes: int = 0) -> tuple[io.BufferedReader[Any], bytes]:
    """Open (decompressing gzip by its magic bytes), skip a UTF-8 BOM; return the stream and its first bytes.

    The stream's `.raw` is a GuardedRaw: gzip output is capped at `max_decompressed_bytes` (0 = no limit)."""
    inner: Any
    if isinstance(path, RemoteFile):  # one sequential read: the magic bytes are peeked, not re-read
        remote = io.BufferedReader(path.open_stream(), buffer_size=_SNIFF_BYTES)  # type: ignore[arg-type]
        compressed = remote.peek(2)[:2] == _GZIP_MAGIC
        inner = gzip.GzipFile(fileobj=remote, mode="rb") if compressed else remote
    else:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == _GZIP_MAGIC
        inner = gzip.open(path, "rb") if compressed else open(path, "rb", buffering=0)
    guard = GuardedRaw(inner, compressed=compressed, max_total=max_decompressed_bytes if compressed else 0)
    raw = io.BufferedReader(guard, buffer_size=_SNIFF_BYTES)
    try:
        head = raw.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
    except (OSError, EOFError, StreamCut) as e:  # corrupt gzip
        raw.close()
        reason = e.reason if isinstance(e, StreamCut) else str(e)
        raise InputError(f"cannot read file: {reason}", path=str(path)) from None
    if head.startswith(_UTF8_BOM):
        raw.read(len(_UTF8_BOM))
        head = head[len(_UTF8_BOM):]
    for bom, encoding in _OTHER_BOMS.items():
        if head.startswith(bom):
            raw.close()
            raise InputError(f"file is {encoding}-encoded; convert it to UTF-8", path=str(path))
    return raw, head


def guard_of(stream: io.BufferedReader) -> GuardedRaw | None:
    raw = getattr(stream, "raw", None)
    return raw if isinstance(raw, GuardedRaw) else None


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def oversize_record(max_bytes: int) -> RecordError:
    return RecordError(
        f"record larger than {human_bytes(max_bytes)} (ingest.max_record_bytes)",
        hint="pass --skip-invalid to skip it, or raise max_record_bytes in the [ingest] table of a --config file "
        "(0 = no limit)",
    )


def encoding_error(path: "Path | RemoteFile", line: int | None, data: bytes) -> InputError | None:
    """An InputError if `data` is not UTF-8 (so a bad encoding is not reported as bad JSON)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return InputError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); convert the file to UTF-8",
            path=str(path), line=line,
        )
    return None


def iter_lines(stream: io.BufferedReader, max_bytes: int = 0) -> Iterator[tuple[int, bytes | RecordError]]:
    """Non-blank lines with their 1-based line numbers, each read with a bounded readline: a line longer than
    `max_bytes` (0 = no limit) comes out as a RecordError and its rest is discarded without being held. If the
    stream is cut (truncated gzip, decompressed limit), a final RecordError with `stops_file` ends the lines."""
    number = 0
    while True:
        try:
            line = stream.readline(max_bytes + 1) if max_bytes else stream.readline()
            if not line:
                return
            number += 1
            if max_bytes and len(line) > max_bytes and not line.endswith(b"\n"):
                _discard_rest_of_line(stream)
                yield number, oversize_record(max_bytes)
                continue
        except StreamCut as e:
            yield number + 1, cut_record(e)
            return
        if line.strip():
            yield number, line


def cut_record(cut: StreamCut) -> RecordError:
    """The unreadable rest of a file, as one invalid record."""
    return RecordError(cut.reason, hint=cut.hint, stops_file=True)


def _discard_rest_of_line(stream: io.BufferedReader) -> None:
    while True:
        chunk = stream.readline(_DISCARD_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return
