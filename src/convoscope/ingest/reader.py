"""The public entry points: stream conversations from a file or directory, filling an IngestReport."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convoscope.errors import InputError
from convoscope.model import Conversation

from .detect import detect_container
from .files import RemoteFile, input_location, list_files, open_bytes
from .json_source import Item, UnknownFormat, read_json
from .options import IngestOptions
from .record import ACCOUNT_FIELDS, TIME_FIELDS, RecordError
from .report import IngestReport
from .tables import read_csv, read_parquet


def read_conversations(
    path: str | Path | RemoteFile, options: IngestOptions, report: IngestReport | None = None, *, refuse_mixed_accounts: bool = True
) -> Iterator[Conversation]:
    """Yield valid, de-duplicated conversations one at a time (memory does not grow with the input, apart from
    small per-conversation hashes for dedupe, id uniqueness and account counting; no record larger than
    `options.max_record_bytes` is held).

    Raises InputError for unreadable input; unless `options.skip_invalid`, for the first malformed or oversize
    record (with file, 1-based line / row / JSON-array item number, and field); and, unless
    `options.missing_accounts == "pool"` (or `refuse_mixed_accounts` is False, for `validate`), as soon as the
    input is seen to mix conversations with and without an account id."""
    report = report if report is not None else IngestReport()
    report._pooling = options.missing_accounts == "pool"
    root = input_location(path)  # a local path, or a URI on a pyarrow filesystem (s3://...)
    files = list_files(root)
    in_directory = root.is_dir()
    seen = Seen()
    read_any = False
    for file_path, name in files:
        formats: list[str] = []
        unit: list[str] = []  # "line", "record" (of a JSON array) or "row": what a position counts in this file
        try:
            counted = _Counted(_read_file(file_path, name, options, formats, unit))
            yield from accepted(counted, report, options, str(file_path), lambda: unit[0], seen, refuse_mixed_accounts=refuse_mixed_accounts)
            n_records = counted.n
            if n_records == 0:  # e.g. "[]" or a CSV header without rows: empty input, not a silent no-op
                raise UnknownFormat("file has no records", path=str(file_path))
        except UnknownFormat as e:
            if not in_directory:
                raise
            report.skipped_files.append(str(e))  # e.g. a metadata .json next to the data; listed, not hidden
            continue
        finally:
            for fmt in formats:
                report.add_format(fmt)
        read_any = True
        report.files += 1
    if not read_any:
        raise InputError(f"no readable file ({'; '.join(report.skipped_files[:3])})", path=str(root))
    check_named_fields(report, options, str(root))


def check_named_fields(report: IngestReport, options: IngestOptions, source: str) -> None:
    """A field named explicitly (--account-field, --time-field) that no conversation has is a mistake (a typo,
    another file's schema), not an input without accounts or times: without it the privacy thresholds would
    silently count conversations instead of people. Called once the whole input is read."""
    if not report.conversations:
        return
    if options.account_field and report.without_account == report.conversations:
        raise InputError(f"no conversation has an account id in field {options.account_field!r} (--account-field, ingest.account_field); "
                         f"check the field's name, or leave the option out to use {', '.join(ACCOUNT_FIELDS)}", path=source)
    if options.time_field and report.without_time == report.conversations:
        raise InputError(f"no conversation has a time in field {options.time_field!r} (--time-field, ingest.time_field); "
                         f"check the field's name, or leave the option out to use {', '.join(TIME_FIELDS)}", path=source)


@dataclass
class Seen:
    """What dedupe and id uniqueness remember across files: small hashes, not the conversations."""

    content: set[bytes] = field(default_factory=set)  # 16-byte content hashes
    ids: set[int] = field(default_factory=set)  # hash() of ids: 64-bit, collisions are negligible at any realistic size


class _Counted:
    """An iterator that counts what passes through it."""

    def __init__(self, items: Iterable[Any]):
        self._items = iter(items)
        self.n = 0

    def __iter__(self) -> "_Counted":
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self.n += 1
        return item


def accepted(items: Iterable[tuple[int, Any]], report: IngestReport, options: IngestOptions, source: str, unit: Callable[[], str],
             seen: Seen, *, refuse_mixed_accounts: bool = True) -> Iterator[Conversation]:
    """The checks every reader applies to parsed records (files and in-memory data alike): invalid ones
    reported (or raised), exact duplicates dropped and counted, duplicate ids invalid, missing account ids
    pooled or refused when mixed, every conversation counted in the report."""
    for pos, item in items:
        if isinstance(item, RecordError):
            _invalid(report, options, item, source, pos, unit())
            continue
        if options.dedupe:
            digest = bytes.fromhex(item.content_hash())
            if digest in seen.content:
                report.duplicates += 1
                continue
            seen.content.add(digest)
        id_key = hash(item.id)
        if id_key in seen.ids:
            _invalid(report, options, RecordError(f"duplicate conversation id {item.id!r}", "id"), source, pos, unit())
            continue
        seen.ids.add(id_key)
        if item.account_id is None and options.missing_accounts == "pool":
            item.pool_missing_account()
        report.add_conversation(item.effective_account, item.account_id is not None, len(item.messages),
                                item.created_at is not None, where=f"{source} {unit()} {pos}")
        if refuse_mixed_accounts and report.account_ids == "mixed":
            raise mixed_accounts_error(report, options)
        yield item


def mixed_accounts_error(report: IngestReport, options: IngestOptions, *, complete: bool = False) -> InputError:
    """Some conversations have an account id and some do not: counted one account each, those without could
    pass the privacy thresholds on their own (20 such records once made 20 'accounts'). Located at the first
    conversation without an id."""
    field = f"field {options.account_field!r}" if options.account_field else "fields user, user_id, account_id"
    where, unit, line = _split_where(report.first_without_account)
    n = report.without_account
    message = (
        f"conversation without an account id ({field}) in an input where others have one "
        f"(first with an id: {report.first_with_account}); {n:,} conversation{'s' if n != 1 else ''} without an "
        f"account id {'in all' if complete else 'so far'}. Counted as one account each, they could pass the privacy thresholds on their own. "
        "Add the account ids (or name the field with --account-field), or pass --pool-missing-accounts "
        "(ingest.missing_accounts = \"pool\") to count all conversations without one as a single shared account."
    )
    return InputError(message, path=where, line=line, unit=unit or "line")


def _split_where(where: str | None) -> tuple[str | None, str | None, int | None]:
    """"data.jsonl line 21" -> ("data.jsonl", "line", 21)."""
    if not where:
        return None, None, None
    head, _, number = where.rpartition(" ")
    path, _, unit = head.rpartition(" ")
    return path, unit, int(number)


def validate_input(path: str | Path | RemoteFile, options: IngestOptions) -> IngestReport:
    """Read everything, keep nothing: the report says what a run would ingest (input a run would refuse for
    mixed account ids is read to the end and explained in `account_problem`)."""
    report = IngestReport()
    for _ in read_conversations(path, options, report, refuse_mixed_accounts=False):
        pass
    if report.account_ids == "mixed":
        report.account_problem = str(mixed_accounts_error(report, options, complete=True))
    return report


def _read_file(path: Path | RemoteFile, name: str, options: IngestOptions, formats: list[str], unit: list[str]) -> Iterator[Item]:
    stream, head = open_bytes(path, options.max_decompressed_bytes)
    with stream:
        container = detect_container(path, head, options)
        if container is None:
            raise (UnknownFormat if options.format is None else InputError)("file is empty", path=str(path))
        unit.append({"parquet": "row", "json": "record"}.get(container, "line"))
        if container == "parquet":
            yield from read_parquet(path, name, options, formats)
        elif container == "csv":
            yield from read_csv(path, name, stream, options, formats)
        else:
            yield from read_json(path, name, stream, container, options, formats)


def _invalid(report: IngestReport, options: IngestOptions, error: RecordError, path: Path, pos: int, unit: str = "line") -> None:
    """Count an invalid record under skip_invalid, else stop with it (plus what the user can do about it)."""
    if not options.skip_invalid:
        hint = error.hint or SKIP_INVALID_HINT
        raise InputError(f"{error.reason}; {hint}", path=str(path), line=pos, field=error.field, unit=unit)
    report.add_invalid(str(InputError(error.reason, path=str(path), line=pos, field=error.field, unit=unit)))


SKIP_INVALID_HINT = "fix the record, or pass --skip-invalid (ingest.skip_invalid) to skip malformed records and count them"


def read_file(file_path: Path | RemoteFile, name: str, options: IngestOptions, report: IngestReport, *, refuse_mixed_accounts: bool = True) -> Iterator[Conversation]:
    """One file of an input read on its own, with its own dedupe and id checks, its records named `name` as
    `read_conversations` names them (the path inside the directory): for engines that read the files of a
    directory in parallel and merge what they read (engines/ray_engine.py). Raises UnknownFormat for a file
    without records, like `read_conversations` does before skipping it in a directory."""
    report._pooling = options.missing_accounts == "pool"
    formats: list[str] = []
    unit: list[str] = []
    try:
        counted = _Counted(_read_file(file_path, name, options, formats, unit))
        yield from accepted(counted, report, options, str(file_path), lambda: unit[0], Seen(), refuse_mixed_accounts=refuse_mixed_accounts)
        if counted.n == 0:
            raise UnknownFormat("file has no records", path=str(file_path))
    finally:
        for fmt in formats:
            report.add_format(fmt)
