"""JSON Lines and JSON documents, read one record at a time (ijson parses arrays incrementally)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ijson
import orjson

from convoscope.errors import InputError
from convoscope.model import Conversation

from . import chatgpt_export, claude_export, hh, openai, prompt, sharegpt
from .detect import describe_unknown, detect_record
from .files import RecordTooLarge, RemoteFile, StreamCut, cut_record, encoding_error, guard_of, iter_lines, oversize_record
from .options import IngestOptions
from .record import RecordContext, RecordError

Parser = Callable[[dict[str, Any], RecordContext], Conversation]
PARSERS: dict[str, Parser] = {
    "openai": openai.parse,
    "sharegpt": sharegpt.parse,
    "hh": hh.parse,
    "claude_export": claude_export.parse,
    "chatgpt_export": chatgpt_export.parse,
    "prompt": prompt.parse,
}
Item = tuple[int, "Conversation | RecordError"]


class UnknownFormat(InputError):
    """The content matches no format (a directory read skips such files; a single file is an error)."""


def read_json(
    path: Path | RemoteFile, name: str, stream: io.BufferedReader, container: str, options: IngestOptions, formats: list[str]
) -> Iterator[Item]:
    """(position, Conversation or RecordError) for each record; the detected format is appended to `formats`."""
    limit = options.max_record_bytes
    records = _jsonl(path, stream, limit) if container == "jsonl" else _document(path, stream, limit)
    parse: Parser | None = PARSERS[options.format] if options.format else None
    if parse is not None:
        formats.append(options.format)  # type: ignore[arg-type]
    ctx = RecordContext(options, "")
    unit = "line" if container == "jsonl" else "record"
    for pos, rec in records:
        if isinstance(rec, RecordError):
            yield pos, rec
            continue
        if not isinstance(rec, dict):
            if parse is None:
                raise UnknownFormat(describe_unknown(rec), path=str(path), line=pos, unit=unit)
            yield pos, RecordError(f"expected a JSON object, got {type(rec).__name__}")
            continue
        if parse is None:
            fmt = detect_record(rec, options)
            if fmt is None:
                raise UnknownFormat(describe_unknown(rec), path=str(path), line=pos, unit=unit)
            formats.append(fmt)
            parse = PARSERS[fmt]
        ctx.derived_id = f"{name}:{pos}"
        try:
            yield pos, parse(rec, ctx)
        except RecordError as e:
            yield pos, e


def _jsonl(path: Path | RemoteFile, stream: io.BufferedReader, max_record_bytes: int) -> Iterator[tuple[int, Any]]:
    loads = orjson.loads
    for number, line in iter_lines(stream, max_record_bytes):
        if isinstance(line, RecordError):  # oversize line, or the unreadable rest of the file
            yield number, line
            continue
        try:
            yield number, loads(line)
        except orjson.JSONDecodeError as e:
            bad_encoding = encoding_error(path, number, line)
            if bad_encoding:
                raise bad_encoding from None
            yield number, RecordError(f"bad JSON: {e}")


# Bytes the buffers may read ahead of the parser (BufferedReader and ijson, 64 KiB each): allowed on top of
# max_record_bytes so that an element just under the limit is never refused because of read-ahead.
_READ_AHEAD = 2 << 16


def _document(path: Path | RemoteFile, stream: io.BufferedReader, max_record_bytes: int) -> Iterator[tuple[int, Any]]:
    """Items of a top-level array (position = 1-based item number), or top-level values (a single object).

    Each element may take about max_record_bytes of input: ijson builds an element whole before yielding it,
    so the byte budget is enforced on the stream while it is parsed. A too-large element ends the file (the
    parser cannot resume inside it): it is one invalid record, the items before it are kept."""
    is_array = stream.peek(1 << 16).lstrip()[:1] == b"["
    items = ijson.items(stream, "item", use_float=True) if is_array else ijson.items(
        stream, "", use_float=True, multiple_values=True
    )
    guard = guard_of(stream)
    budget = max_record_bytes + _READ_AHEAD if max_record_bytes else 0
    number = 0
    try:
        if guard is not None:
            guard.start_record(budget)
        for number, item in enumerate(items, 1):
            yield number, item
            if guard is not None:
                guard.start_record(budget)
    except RecordTooLarge:
        error = oversize_record(max_record_bytes)
        yield number + 1, RecordError(f"{error.reason}; the rest of the file was not read", hint=error.hint,
                                      stops_file=True)
    except StreamCut as e:
        yield number + 1, cut_record(e)
    except ijson.JSONError as e:
        # The parser cannot resynchronise after a syntax error, so this stops the file even with skip_invalid.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "utf" in reason.lower():
            raise InputError("not UTF-8 text; convert the file to UTF-8", path=str(path)) from None
        raise InputError(f"bad JSON: {reason}", path=str(path), line=number + 1, unit="record") from None
    finally:
        if guard is not None:
            guard.start_record(0)
