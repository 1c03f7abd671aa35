"""Conversations given in memory (the Python API): an iterable of record dicts, a pandas DataFrame or a
pyarrow Table. They are read with the same record parsers and table logic as files, and the same
checks (dedupe, unique ids, account ids), and are never written anywhere: the pipeline re-reads them
from memory whenever a stage needs the text, exactly as it re-reads a file.

    source = MemorySource.from_data(records)   # materialised once: a generator can be read only once
    for conv in source.read(IngestOptions(), report): ...

Record dicts take any supported JSON record shape ({"messages": [...]}, {"text": ...}, {"prompt": ...},
ShareGPT, hh, exports), with optional id / user / created_at / metadata. Table rows are one conversation
each (a text/prompt column or a messages column) or one message each (conversation_id, role, content
columns), as for CSV and Parquet. Positions in error messages are 0-based (`records: index 16`), as
Python indexes the list or `DataFrame.iloc`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from typing import Any

import orjson

from convoscope.errors import InputError
from convoscope.model import Conversation

from .detect import detect_record
from .json_source import PARSERS, Item
from .options import IngestOptions
from .reader import Seen, accepted, check_named_fields
from .record import RecordContext, RecordError
from .report import IngestReport
from .tables import _read_table

UNIT = "index"
_ARROW_BATCH = 4096


def _plain(value: Any) -> Any:
    """numpy / pandas values as plain Python (what the record parsers expect); NaN, NaT and NA as None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    module = type(value).__module__
    if module.startswith("pandas"):
        if type(value).__name__ in ("NaTType", "NAType"):
            return None
        if hasattr(value, "to_pydatetime"):  # pd.Timestamp
            return value.to_pydatetime()
    if module == "numpy":
        if hasattr(value, "tolist"):  # numpy scalars and arrays (e.g. a messages cell read from Parquet)
            return _plain(value.tolist())
    if isinstance(value, (datetime, date)):
        return value
    return value


def _fingerprint_default(value: Any) -> Any:
    return str(value)


class MemorySource:
    """Records held in memory, re-readable any number of times."""

    def __init__(self, kind: str, *, records: list[dict[str, Any]] | None = None, columns: list[str] | None = None,
                 rows: list[dict[str, Any]] | None = None, table: Any = None):
        self.kind = kind  # "records", "DataFrame" or "Table": the name errors give the input
        self._records = records
        self._columns = columns
        self._rows = rows
        self._table = table
        self.fingerprint = self._hash()

    # -- construction --------------------------------------------------------------------------------

    @classmethod
    def from_data(cls, data: Any) -> "MemorySource":
        """A pandas DataFrame, a pyarrow Table (or RecordBatch), or an iterable of dicts."""
        module = type(data).__module__
        if module.startswith("pyarrow"):
            import pyarrow as pa

            if isinstance(data, pa.RecordBatch):
                data = pa.Table.from_batches([data])
            if isinstance(data, pa.Table):
                if data.num_rows == 0:
                    raise InputError("the pyarrow Table has no rows", path="Table")
                return cls("Table", columns=list(data.column_names), table=data)
        if module.startswith("pandas") and hasattr(data, "to_dict") and hasattr(data, "columns"):
            if len(data) == 0:
                raise InputError("the DataFrame has no rows", path="DataFrame")
            columns = [str(c) for c in data.columns]
            rows = [{str(k): _plain(v) for k, v in row.items()} for row in data.to_dict("records")]
            return cls("DataFrame", columns=columns, rows=rows)
        if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
            raise TypeError(
                f"cannot read conversations from a {type(data).__name__}: give a path, an iterable of record dicts, "
                "a pandas DataFrame or a pyarrow Table")
        records = []
        for i, rec in enumerate(data):
            if not isinstance(rec, Mapping):
                raise TypeError(
                    f"record {i} is a {type(rec).__name__}, not a dict: give one dict per conversation, e.g. "
                    "{'messages': [{'role': 'user', 'content': '...'}]} or {'text': '...'}")
            records.append({str(k): _plain(v) for k, v in rec.items()})
        if not records:
            raise InputError("no records: the iterable is empty", path="records")
        return cls("records", records=records)

    def __len__(self) -> int:
        if self._records is not None:
            return len(self._records)
        if self._rows is not None:
            return len(self._rows)
        return int(self._table.num_rows)

    @property
    def label(self) -> str:
        """What the manifest records as the input (no content)."""
        unit = "records" if self.kind == "records" else "rows"
        return f"<in memory: {self.kind}, {len(self):,} {unit}>"

    def _hash(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(self.kind.encode())
        h.update(orjson.dumps(self._columns))
        option = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
        for row in self._iter_rows():
            h.update(orjson.dumps(row, option=option, default=_fingerprint_default))
            h.update(b"\n")
        return h.hexdigest()

    def _iter_rows(self) -> Iterator[dict[str, Any]]:
        if self._records is not None:
            yield from self._records
        elif self._rows is not None:
            yield from self._rows
        else:
            for batch in self._table.to_batches(max_chunksize=_ARROW_BATCH):
                yield from batch.to_pylist()

    # -- reading -------------------------------------------------------------------------------------

    def _items(self, options: IngestOptions, formats: list[str]) -> Iterator[Item]:
        if self._records is None:
            formats.append("dataframe" if self.kind == "DataFrame" else "arrow")
            rows = ((i, row) for i, row in enumerate(self._iter_rows()))
            yield from _read_table(self.kind, "records", list(self._columns or []), rows, options)  # type: ignore[arg-type]
            return
        ctx = RecordContext(options, "")
        fixed = PARSERS[options.format] if options.format in PARSERS else None
        if options.format is not None and fixed is None:
            raise InputError(f"format {options.format!r} is for files; records in memory take a record format "
                             f"({', '.join(PARSERS)}) or none (detected per record)", path=self.kind)
        for i, rec in enumerate(self._records):
            fmt = options.format or detect_record(rec, options)
            if fmt is None:
                keys = ", ".join(list(rec)[:10]) or "none"
                yield i, RecordError(f"unknown record shape: fields ({keys}); expected e.g. 'messages' (a list of "
                                     "{role, content}), 'text' or 'prompt'")
                continue
            if fmt not in formats:
                formats.append(fmt)
            ctx.derived_id = f"records:{i}"
            try:
                yield i, PARSERS[fmt](rec, ctx)
            except RecordError as e:
                yield i, e

    def read(self, options: IngestOptions, report: IngestReport | None = None, *,
             refuse_mixed_accounts: bool = True) -> Iterator[Conversation]:
        """Valid, de-duplicated conversations, with the file reader's checks and report."""
        report = report if report is not None else IngestReport()
        report._pooling = options.missing_accounts == "pool"
        formats: list[str] = []
        try:
            yield from accepted(self._items(options, formats), report, options, self.kind, lambda: UNIT, Seen(),
                                refuse_mixed_accounts=refuse_mixed_accounts)
        finally:
            for fmt in formats:
                report.add_format(fmt)
        report.files = 1
        check_named_fields(report, options, self.kind)

