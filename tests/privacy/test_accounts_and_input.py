"""Issue 11, attacks 2 and 9, at the ingest layer: accounts you can trust, bounded input.

Attack 2: 20 records without `user` in a file where every other record has one counted as 20 accounts and
passed the 5-account gate. Now such input is refused (naming file, line and the flag that pools them),
`--pool-missing-accounts` counts them as ONE account, and input without any account id still runs.

Attack 9: a 611 KB .gz expanding to one 600 MB line made `validate` peak at 2.47 GB. Now records and
decompressed files are capped, an oversize record is an invalid record named by file and line, and memory
stays bounded while it is skipped.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from convoscope.errors import InputError
from convoscope.ingest import IngestOptions, IngestReport, read_conversations
from convoscope.model import POOLED_ACCOUNT

POOL_FLAG = "--pool-missing-accounts"


def _records(users: list[str | None]) -> list[dict[str, Any]]:
    out = []
    for i, user in enumerate(users):
        rec: dict[str, Any] = {"id": f"c{i}", "text": f"question number {i}"}
        if user is not None:
            rec["user"] = user
        out.append(rec)
    return out


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def _read(path: Path, **options: Any) -> tuple[list, IngestReport]:
    report = IngestReport()
    return list(read_conversations(path, IngestOptions(**options), report)), report


def _cli(args: list[str]):
    from convoscope.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _error_of(result) -> str:
    assert result.exit_code != 0
    return str(result.exception) if isinstance(result.exception, InputError) else result.output


# -- attack 2: mixed account ids ---------------------------------------------------------------------------

def test_mixed_jsonl_refused_at_first_record_without_account(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", _records(["u1", "u2", "u3", None, "u4", None]))
    with pytest.raises(InputError) as caught:
        _read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: conversation without an account id")
    assert POOL_FLAG in message and "1 conversation without an account id so far" in message
    assert f"first with an id: {path} line 1" in message


def test_mixed_with_ids_starting_later_names_where_they_start(tmp_path):
    """The attack's shape the other way round: 20 records without ids first, then ids."""
    path = _jsonl(tmp_path / "late.jsonl", _records([None] * 20 + ["u1", "u2"]))
    with pytest.raises(InputError) as caught:
        _read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:1: ") and f"first with an id: {path} line 21" in message
    assert "20 conversations without an account id so far" in message


def test_mixed_json_array_names_the_item(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_bytes(orjson.dumps([{"user": "u1", "messages": [{"role": "user", "content": "hi"}]},
                                   {"messages": [{"role": "user", "content": "there"}]}]))
    with pytest.raises(InputError, match=rf"{path}: record 2: conversation without an account id.*record 1.*{POOL_FLAG}"):
        _read(path)


def test_mixed_csv_names_the_line(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("id,user,text\n1,u1,first\n2,,second\n3,u2,third\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"{path}:3: conversation without an account id.*{POOL_FLAG}"):
        _read(path)


def test_mixed_across_files_of_a_directory(tmp_path):
    _jsonl(tmp_path / "a.jsonl", _records(["u1", "u2"]))
    _jsonl(tmp_path / "b.jsonl", [{"id": "x", "text": "no account here"}])
    with pytest.raises(InputError, match=r"b\.jsonl:1: conversation without an account id.*a\.jsonl line 1"):
        _read(tmp_path)


def test_named_account_field_is_in_the_message(tmp_path):
    path = _jsonl(tmp_path / "f.jsonl", [{"id": "1", "owner": "o1", "text": "a"}, {"id": "2", "text": "b"}])
    with pytest.raises(InputError, match="field 'owner'"):
        _read(path, account_field="owner")


def test_pooled_mode_counts_all_missing_as_one_account(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", _records(["u1", "u2", "u3", "u4"] + [None] * 20))
    convs, report = _read(path, missing_accounts="pool")
    assert len(convs) == 24
    assert {c.effective_account for c in convs if c.account_id is None} == {POOLED_ACCOUNT}
    assert report.accounts == 5 and report.without_account == 20 and report.account_ids == "pooled"


def test_no_account_ids_at_all_still_runs(tmp_path):
    path = _jsonl(tmp_path / "none.jsonl", _records([None] * 7))
    convs, report = _read(path)
    assert len(convs) == 7 and report.accounts == 7  # each conversation its own account, as before
    assert report.account_ids == "absent" and report.missing_account and report.without_account == 7
    _, report = _read(_jsonl(tmp_path / "all.jsonl", _records(["u1", "u2", "u1"])))
    assert report.account_ids == "present" and report.without_account == 0 and report.accounts == 2


def _ingest_stage(tmp_path: Path, input_path: Path, **ingest: Any):
    from convoscope.config import Config
    from convoscope.context import RunContext
    from convoscope.stages.ingest import run_ingest
    from convoscope.store import RunStore

    store = RunStore(tmp_path / "run", create=True)
    ctx = RunContext(config=Config.model_validate({"ingest": ingest}), store=store, input_path=input_path,
                     show_progress=False)
    run_ingest(ctx)
    return store


def test_ingest_stage_records_account_ids_and_pools_into_one_hash(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", _records(["u1", "u2", "u3", "u4"] + [None] * 20))
    store = _ingest_stage(tmp_path, path, missing_accounts="pool")
    report = store.stage_record("ingest")["report"]
    assert report["account_ids"] == "pooled" and report["without_account"] == 20
    hashes = store.read_table("conversations", ["account"]).column("account").to_pylist()
    assert len(set(hashes)) == 5  # 4 real accounts + 1 pool, not 24


def test_ingest_stage_records_absent_account_ids(tmp_path):
    store = _ingest_stage(tmp_path, _jsonl(tmp_path / "none.jsonl", _records([None] * 3)))
    assert store.stage_record("ingest")["report"]["account_ids"] == "absent"


def test_run_refuses_mixed_input_before_any_stage_completes(tmp_path):
    from convoscope.store import RunStore

    path = _jsonl(tmp_path / "mixed.jsonl", _records(["u1"] * 5 + [None] * 20))
    run_dir = tmp_path / "run"
    result = _cli(["run", path, "--out", run_dir, "--quiet"])
    assert POOL_FLAG in _error_of(result)
    stages = RunStore(run_dir).manifest.get("stages", {}) if (run_dir / "manifest.json").exists() else {}
    assert not stages and not (run_dir / "aggregates.json").exists()


def test_validate_counts_records_without_account_and_says_it_would_be_refused(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", _records(["u1", "u2", "u3"] + [None] * 20))
    result = _cli(["validate", path])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "without_account 20" in text and "a run refuses this input" in text and POOL_FLAG in text
    data = json.loads(_cli(["validate", path, "--json"]).output)
    assert data["valid"] is False and data["without_account"] == 20 and data["account_ids"] == "mixed"
    assert POOL_FLAG in data["account_problem"]
    pooled = json.loads(_cli(["validate", path, "--json", POOL_FLAG]).output)
    assert pooled["valid"] is True and pooled["account_ids"] == "pooled" and pooled["accounts"] == 4


def test_validate_says_when_there_are_no_account_ids(tmp_path):
    result = _cli(["validate", _jsonl(tmp_path / "none.jsonl", _records([None] * 4))])
    assert result.exit_code == 0 and "no account ids" in result.output


# -- attack 9: bounded input --------------------------------------------------------------------------------

def _line(i: int, size: int = 0) -> bytes:
    return orjson.dumps({"id": f"r{i}", "text": f"question {i} " + "x" * size}) + b"\n"


def test_oversize_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(_line(1) + _line(2, size=5000) + _line(3))
    convs, report = _read(path, skip_invalid=True, max_record_bytes=1000)
    assert [c.id for c in convs] == ["r1", "r3"] and report.invalid == 1  # reading went on at the next line
    assert report.invalid_examples[0].startswith(f"{path}:2: record larger than 1000 bytes")


def test_oversize_line_stops_the_run_naming_the_ways_out(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(_line(1) + _line(2, size=5000))
    with pytest.raises(InputError) as caught:
        _read(path, max_record_bytes=1000)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: record larger than 1000 bytes (ingest.max_record_bytes)")
    assert "--skip-invalid" in message and "max_record_bytes" in message


def test_oversize_json_array_element_keeps_the_items_before(tmp_path):
    path = tmp_path / "big.json"
    small = {"messages": [{"role": "user", "content": "small"}]}
    path.write_bytes(orjson.dumps([small, {"messages": [{"role": "user", "content": "y" * 600_000}]}, small]))
    convs, report = _read(path, skip_invalid=True, max_record_bytes=100_000)
    assert len(convs) == 1 and report.invalid == 1 and f"{path}: record 2: record larger than" in report.invalid_examples[0]
    with pytest.raises(InputError, match=rf"{path}: record 2: record larger than .*--skip-invalid"):
        _read(path, max_record_bytes=100_000)


def test_oversize_csv_row_and_parquet_row(tmp_path):
    csv_path = tmp_path / "big.csv"
    csv_path.write_text("id,text\n1,small\n2," + "z" * 5000 + "\n", encoding="utf-8")
    convs, report = _read(csv_path, skip_invalid=True, max_record_bytes=1000)
    assert [c.id for c in convs] == ["1"] and report.invalid == 1
    with pytest.raises(InputError, match=rf"{csv_path}:3: record larger than"):
        _read(csv_path, max_record_bytes=1000)
    pq_path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": ["1", "2", "3"], "text": ["small", "z" * 5000, "small too"]}), pq_path)
    convs, report = _read(pq_path, skip_invalid=True, max_record_bytes=1000)
    assert [c.id for c in convs] == ["1", "3"] and report.invalid == 1  # Parquet rows are independent
    with pytest.raises(InputError, match=rf"{pq_path}: uncompressed size .* exceeds 1000 bytes"):
        _read(pq_path, max_decompressed_bytes=1000)  # Parquet compresses too: its metadata says by how much


def _gzip_lines(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as f:
        for line in lines:
            f.write(line)
    return path


def test_decompression_bomb_is_stopped_and_named(tmp_path):
    path = _gzip_lines(tmp_path / "bomb.jsonl.gz", [_line(i, size=200) for i in range(2000)])
    with pytest.raises(InputError, match=rf"{path}:\d+: decompresses to more than 100 KiB.*max_decompressed_bytes"):
        _read(path, max_decompressed_bytes=100 << 10)
    convs, report = _read(path, skip_invalid=True, max_decompressed_bytes=100 << 10)
    assert 200 < len(convs) < 2000 and report.invalid == 1  # what was read is kept, the tail is one invalid
    assert "decompresses to more than" in report.invalid_examples[0]
    convs, _ = _read(path, max_decompressed_bytes=0)  # 0 = no limit
    assert len(convs) == 2000


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_truncated_gzip_keeps_the_readable_part(tmp_path, kind):
    records = [{"id": f"t{i}", "text": f"hello {i} " + "x" * (i % 97)} for i in range(3000)]
    if kind == "jsonl":
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    else:
        data = orjson.dumps(records)
    whole = gzip.compress(data)
    path = tmp_path / f"cut.{kind}.gz"
    path.write_bytes(whole[: len(whole) // 2])
    convs, report = _read(path, skip_invalid=True)
    assert 500 < len(convs) < 3000 and report.invalid == 1
    assert "compressed data ends early or is corrupt" in report.invalid_examples[0]
    with pytest.raises(InputError, match=rf"{path}(:|: record )\d+: compressed data ends early.*--skip-invalid"):
        _read(path)


_MEASURE = textwrap.dedent("""
    import sys
    from convoscope.ingest import IngestOptions, validate_input
    def status_kib(field):  # VmRSS: resident now; VmHWM: peak resident (per address space, so not the parent's)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    before = status_kib("VmRSS")
    report = validate_input(sys.argv[1], IngestOptions(skip_invalid=True))
    print(before, status_kib("VmHWM"), report.conversations, report.invalid)
""")


def write_gzip_bomb(path: Path, line_bytes: int) -> Path:
    """One JSON line of `line_bytes` (a ~1000:1 gzip bomb) between two normal lines, written streaming."""
    chunk = b"a" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(_line(1))
        f.write(b'{"id": "bomb", "text": "')
        for _ in range(line_bytes // len(chunk)):
            f.write(chunk)
        f.write(b'"}\n')
        f.write(_line(2))
    return path


def measure_validate_peak(path: Path) -> tuple[int, int, int, int]:
    """(RSS before, peak RSS, conversations, invalid) of `validate_input` in a fresh process, KiB."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True)
    before, peak, conversations, invalid = map(int, out.stdout.split())
    return before, peak, conversations, invalid


def test_gzip_bomb_memory_stays_bounded(tmp_path):
    """200 MB in one line (the reported bomb was 600 MB; see docs): peak growth far under 1 GB."""
    path = write_gzip_bomb(tmp_path / "bomb.jsonl.gz", 200 << 20)
    assert path.stat().st_size < 1 << 20
    before, peak, conversations, invalid = measure_validate_peak(path)
    assert conversations == 2 and invalid == 1
    growth_mib = (peak - before) / 1024
    assert growth_mib < 100, f"peak grew by {growth_mib:.0f} MiB"


if __name__ == "__main__":  # measure by hand: python tests/privacy/test_accounts_and_input.py 600
    import tempfile

    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    with tempfile.TemporaryDirectory() as tmp:
        bomb = write_gzip_bomb(Path(tmp) / "bomb.jsonl.gz", size_mb << 20)
        before, peak, conversations, invalid = measure_validate_peak(bomb)
        print(f"{size_mb} MB line in a {bomb.stat().st_size / 1e3:.0f} KB .gz: RSS before {before / 1024:.0f} MiB, "
              f"peak {peak / 1024:.0f} MiB (growth {(peak - before) / 1024:.0f} MiB); "
              f"{conversations} conversations, {invalid} invalid")
