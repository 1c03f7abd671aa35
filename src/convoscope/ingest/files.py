"""Finding input files and opening them as byte streams (gzip, BOM and encoding handled here)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from convoscope.errors import InputError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
_GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}
_SNIFF_BYTES = 1 << 16


def list_files(path: Path) -> list[tuple[Path, str]]:
    """(file, display name) pairs: the file itself, or every supported file under a directory, sorted."""
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


def supported(path: Path) -> bool:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(SUFFIXES)


def open_bytes(path: Path) -> tuple[io.BufferedReader, bytes]:
    """Open (decompressing gzip by its magic bytes), skip a UTF-8 BOM; return the stream and its first bytes."""
    raw = open(path, "rb")
    try:
        if raw.read(2) == _GZIP_MAGIC:
            raw.close()
            raw = io.BufferedReader(gzip.open(path, "rb"), buffer_size=_SNIFF_BYTES)  # type: ignore[assignment]
        else:
            raw.seek(0)
            raw = io.BufferedReader(raw, buffer_size=_SNIFF_BYTES)  # type: ignore[arg-type]
        head = raw.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
    except (OSError, EOFError) as e:  # corrupt gzip
        raw.close()
        raise InputError(f"cannot read file: {e}", path=str(path)) from None
    if head.startswith(_UTF8_BOM):
        raw.read(len(_UTF8_BOM))
        head = head[len(_UTF8_BOM):]
    for bom, encoding in _OTHER_BOMS.items():
        if head.startswith(bom):
            raw.close()
            raise InputError(f"file is {encoding}-encoded; convert it to UTF-8", path=str(path))
    return raw, head  # type: ignore[return-value]


def encoding_error(path: Path, line: int | None, data: bytes) -> InputError | None:
    """An InputError if `data` is not UTF-8 (so a bad encoding is not reported as bad JSON)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return InputError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); convert the file to UTF-8",
            path=str(path), line=line,
        )
    return None


def iter_lines(stream: io.BufferedReader) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based line numbers."""
    for number, line in enumerate(stream, 1):
        if line.strip():
            yield number, line
