"""The public entry points: stream conversations from a file or directory, filling an IngestReport."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from convoscope.errors import InputError
from convoscope.model import Conversation

from .detect import detect_container
from .files import list_files, open_bytes
from .json_source import Item, UnknownFormat, read_json
from .options import IngestOptions
from .record import RecordError
from .report import IngestReport
from .tables import read_csv, read_parquet


def read_conversations(
    path: str | Path, options: IngestOptions, report: IngestReport | None = None
) -> Iterator[Conversation]:
    """Yield valid, de-duplicated conversations one at a time (memory does not grow with the input, apart from
    small per-conversation hashes for dedupe, id uniqueness and account counting).

    Raises InputError for unreadable input and, unless `options.skip_invalid`, for the first malformed record
    (with file, 1-based line / row / JSON-array item number, and field)."""
    report = report if report is not None else IngestReport()
    root = Path(path)
    files = list_files(root)
    in_directory = root.is_dir()
    seen_content: set[bytes] = set()  # 16-byte content hashes
    seen_ids: set[int] = set()  # hash() of ids: 64-bit, collisions are negligible at any realistic size
    read_any = False
    for file_path, name in files:
        formats: list[str] = []
        try:
            n_records = 0
            for pos, item in _read_file(file_path, name, options, formats):
                n_records += 1
                if isinstance(item, RecordError):
                    _invalid(report, options, InputError(item.reason, path=str(file_path), line=pos, field=item.field))
                    continue
                if options.dedupe:
                    digest = bytes.fromhex(item.content_hash())
                    if digest in seen_content:
                        report.duplicates += 1
                        continue
                    seen_content.add(digest)
                id_key = hash(item.id)
                if id_key in seen_ids:
                    _invalid(report, options, InputError(
                        f"duplicate conversation id {item.id!r}", path=str(file_path), line=pos, field="id"))
                    continue
                seen_ids.add(id_key)
                report.add_conversation(
                    item.effective_account, item.account_id is not None, len(item.messages), item.created_at is not None
                )
                yield item
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


def validate_input(path: str | Path, options: IngestOptions) -> IngestReport:
    """Read everything, keep nothing: the report says what a run would ingest."""
    report = IngestReport()
    for _ in read_conversations(path, options, report):
        pass
    return report


def _read_file(path: Path, name: str, options: IngestOptions, formats: list[str]) -> Iterator[Item]:
    stream, head = open_bytes(path)
    with stream:
        container = detect_container(path, head, options)
        if container is None:
            raise (UnknownFormat if options.format is None else InputError)("file is empty", path=str(path))
        if container == "parquet":
            yield from read_parquet(path, name, options, formats)
        elif container == "csv":
            yield from read_csv(path, name, stream, options, formats)
        else:
            yield from read_json(path, name, stream, container, options, formats)


def _invalid(report: IngestReport, options: IngestOptions, error: InputError) -> None:
    if not options.skip_invalid:
        raise error
    report.add_invalid(str(error))
