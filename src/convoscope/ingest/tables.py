"""CSV and Parquet: one row per message (grouped into conversations) or one row per conversation."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from convoscope.errors import InputError
from convoscope.model import Conversation

from . import openai, prompt
from .files import RemoteFile, StreamCut, cut_record, human_bytes, oversize_record
from .json_source import Item, Parser, UnknownFormat
from .options import IngestOptions
from .record import TEXT_FIELDS, RecordContext, RecordError, build, message, shown

_PARQUET_BATCH = 4096
Row = tuple[int, "dict[str, Any] | RecordError"]  # a RecordError: a row that could not be read


class _RowTooLarge(Exception):
    pass


class _BoundedLines:
    """The text lines the csv module parses, read with a bounded readline: a row (one line, or several when a
    quoted cell holds newlines) longer than `max_chars` raises _RowTooLarge after its current line is discarded,
    so no oversize row is ever held. An iterator class, not a generator: it must survive raising."""

    def __init__(self, text: io.TextIOWrapper, max_chars: int):
        self._text = text
        self._max = max_chars  # 0 = no limit
        self.lines = 0  # physical lines read so far
        self.row_chars = 0  # characters of the row being parsed; reset by the caller after each row

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        line = self._text.readline(self._max + 1) if self._max else self._text.readline()
        if not line:
            raise StopIteration
        self.lines += 1
        self.row_chars += len(line)
        if self._max and self.row_chars > self._max:
            if len(line) > self._max and not line.endswith(("\n", "\r")):
                while (chunk := self._text.readline(1 << 20)) and not chunk.endswith(("\n", "\r")):
                    pass  # discard the rest of the line, a chunk at a time
            raise _RowTooLarge()
        return line


def read_csv(
    path: Path | RemoteFile, name: str, stream: io.BufferedReader, options: IngestOptions, formats: list[str]
) -> Iterator[Item]:
    # A cell is capped like a record (the 128 KiB default is too small for conversation text).
    csv.field_size_limit(options.max_record_bytes or sys.maxsize)
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
    delimiter = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
    lines = _BoundedLines(text, options.max_record_bytes)
    # strict: a quoted cell left open would otherwise swallow every later row as its text, and the error
    # reported would be about that row's other (now empty) cells
    reader = csv.DictReader(lines, delimiter=delimiter, strict=True)
    try:
        columns = reader.fieldnames
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text; convert the file to UTF-8", path=str(path)) from None
    except (_RowTooLarge, csv.Error):
        raise InputError(oversize_record(options.max_record_bytes).reason + " in the header", path=str(path)) from None
    except StreamCut as e:
        raise InputError(e.reason, path=str(path)) from None
    if not columns:
        raise InputError("file is empty", path=str(path))
    formats.append("csv")

    def rows() -> Iterator[Row]:
        start = lines.lines + 1  # a row's own first line, even when a quoted cell spans lines
        lines.row_chars = 0
        try:
            for row in reader:
                if None in row:  # more cells than header columns
                    yield start, {None: row.pop(None), **row}
                else:
                    yield start, row
                start = lines.lines + 1
                lines.row_chars = 0
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text; convert the file to UTF-8", path=str(path), line=start) from None
        except StreamCut as e:
            yield start, cut_record(e)
        except (_RowTooLarge, csv.Error) as e:
            if isinstance(e, csv.Error) and "field limit" not in str(e):
                unclosed = "unexpected end of data" in str(e)
                raise InputError(f"bad CSV: {'a quoted cell is never closed' if unclosed else e}", path=str(path), line=start) from None
            # After an oversize row the csv parser may be inside a quoted cell: it cannot resynchronise safely.
            error = oversize_record(options.max_record_bytes)
            yield start, RecordError(f"{error.reason}; the rest of the file was not read", hint=error.hint,
                                     stops_file=True)

    yield from _read_table(path, name, list(columns), rows(), options)


def read_parquet(path: Path | RemoteFile, name: str, options: IngestOptions, formats: list[str]) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path.open_random() if isinstance(path, RemoteFile) else path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read Parquet file: {reason}", path=str(path)) from None
    formats.append("parquet")
    _check_parquet_size(path, table, options.max_decompressed_bytes)
    limit = options.max_record_bytes

    def rows() -> Iterator[Row]:
        number = 0
        for batch in table.iter_batches(batch_size=_parquet_batch_rows(table)):
            for row in batch.to_pylist():
                number += 1
                yield number, (oversize_record(limit) if limit and _row_chars(row) > limit else row)

    yield from _read_table(path, name, table.schema_arrow.names, rows(), options)


def _check_parquet_size(path: Path | RemoteFile, table: Any, max_bytes: int) -> None:
    """Parquet compresses too: refuse a file whose uncompressed size (from its metadata) exceeds the limit."""
    meta = table.metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if max_bytes and size > max_bytes:
        raise InputError(
            f"uncompressed size {human_bytes(size)} exceeds {human_bytes(max_bytes)} (ingest.max_decompressed_bytes); "
            "if the file is genuine, raise max_decompressed_bytes in the [ingest] table of a --config file (0 = no limit)",
            path=str(path),
        )


def _parquet_batch_rows(table: Any) -> int:
    """Rows per batch so that a batch of average rows stays near 64 MiB (pyarrow decodes a batch at once)."""
    meta = table.metadata
    if not meta.num_rows:
        return _PARQUET_BATCH
    avg = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) / meta.num_rows
    return max(1, min(_PARQUET_BATCH, int((64 << 20) / max(avg, 1))))


def _row_chars(row: dict[str, Any]) -> int:
    return sum(len(v) for v in row.values() if isinstance(v, (str, bytes)))


def _read_table(path: Path | RemoteFile, name: str, columns: list[str], rows: Iterator[Row], options: IngestOptions) -> Iterator[Item]:
    msg_columns = {options.conversation_column, options.role_column, options.content_column}
    layout = options.table_layout
    if layout == "auto":
        layout = "message" if msg_columns <= set(columns) else "conversation"
    if layout == "message":
        missing = sorted(msg_columns - set(columns))
        if missing:
            raise InputError(f"missing column(s) {', '.join(missing)} for one-row-per-message layout", path=str(path))
        yield from _message_rows(name, rows, options)
        return
    if "messages" in columns:
        yield from _conversation_rows(name, rows, options, _parse_messages_row)
    elif (options.text_field or "") in columns or any(c in columns for c in TEXT_FIELDS):
        yield from _conversation_rows(name, rows, options, prompt.parse)
    else:
        raise UnknownFormat(
            f"unknown table layout: columns ({', '.join(columns[:10])}); expected {options.conversation_column}/"
            f"{options.role_column}/{options.content_column} (one row per message), a 'messages' column (JSON), "
            "or a text/prompt column",
            path=str(path),
        )


def _parse_messages_row(row: dict[str, Any], ctx: RecordContext) -> Conversation:
    raw = row.get("messages")
    if isinstance(raw, str):  # CSV cells hold the message list as JSON
        try:
            row = {**row, "messages": orjson.loads(raw)}
        except orjson.JSONDecodeError as e:
            raise RecordError(f"bad JSON: {e}", "messages") from None
    return openai.parse(row, ctx)


def _conversation_rows(name: str, rows: Iterator[Row], options: IngestOptions, parse: Parser) -> Iterator[Item]:
    ctx = RecordContext(options, "")
    for number, row in rows:
        if isinstance(row, RecordError):
            yield number, row
            continue
        if None in row:
            yield number, RecordError("more cells than header columns")
            continue
        ctx.derived_id = f"{name}:{number}"
        try:
            yield number, parse(row, ctx)
        except RecordError as e:
            yield number, e


def _message_rows(name: str, rows: Iterator[Row], options: IngestOptions) -> Iterator[Item]:
    """Group consecutive rows with the same conversation id; each conversation's rows must be contiguous."""
    ctx = RecordContext(options.model_copy(update={"id_field": options.conversation_column}), "")
    finished: set[int] = set()  # hashes of conversation ids already yielded (a set of ints, not of rows)
    group: list[Row] = []
    for number, row in rows:
        if isinstance(row, RecordError):  # an unreadable row: what was read of the current group is kept
            if group and row.stops_file:
                yield _conversation(group, ctx, finished)
                group = []
            yield number, row
            continue
        conv_id = row.get(options.conversation_column)
        if None in row or conv_id is None or conv_id == "":
            yield number, RecordError(
                "more cells than header columns" if None in row else "missing", options.conversation_column
            )
            continue
        if group and conv_id != group[0][1][options.conversation_column]:
            yield _conversation(group, ctx, finished)
            group = []
        group.append((number, row))
    if group:
        yield _conversation(group, ctx, finished)


def _conversation(group: list[Row], ctx: RecordContext, finished: set[int]) -> Item:
    opts = ctx.options
    first_number, first = group[0]
    conv_id = first[opts.conversation_column]
    key = hash(str(conv_id))
    if key in finished:
        return first_number, RecordError(
            f"rows of conversation {conv_id!r} are not contiguous; sort the table by {opts.conversation_column}",
            opts.conversation_column,
        )
    finished.add(key)
    if opts.order_column is not None:
        try:
            group = sorted(group, key=lambda r: _order_key(r, opts.order_column))  # type: ignore[arg-type]
        except RecordError as e:
            return first_number, e
    messages = []
    for number, row in group:
        role = openai.ROLES.get(row.get(opts.role_column))  # type: ignore[arg-type]
        if role is None:
            return number, RecordError(f"unknown role {shown(row.get(opts.role_column))}", opts.role_column)
        content = row.get(opts.content_column)
        if not isinstance(content, str):
            return number, RecordError("missing" if content is None else "expected a string", opts.content_column)
        messages.append(message(role, content))
    used = {opts.role_column, opts.content_column, opts.order_column}
    ctx.derived_id = str(conv_id)
    try:
        return first_number, build(first, ctx, messages, used)  # type: ignore[arg-type]
    except RecordError as e:
        return first_number, e


def _order_key(row: Row, column: str) -> float:
    number, values = row
    value = values.get(column)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RecordError(f"bad order value {shown(value)} at row {number} (expected a number)", column) from None
