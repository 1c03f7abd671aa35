"""Input from a pyarrow filesystem: a directory on S3 (a local moto server speaking the real protocol) reads
exactly as the same directory on disk, and bad input is located the same way (file URI, line, field)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("moto")

from convoscope.errors import InputError  # noqa: E402
from convoscope.ingest import IngestOptions, IngestReport, read_conversations  # noqa: E402
from convoscope.ingest.files import RemoteFile, file_stats, input_location, is_remote  # noqa: E402
from fakes.s3_server import local_s3, upload_tree  # noqa: E402


def _chat(i: int, user: str = "") -> dict:
    return {"id": f"c{i}", "user": user or f"u{i % 7}", "created_at": "2026-01-02T10:00:00Z",
            "messages": [{"role": "user", "content": f"How do I bake bread number {i}?"}, {"role": "assistant", "content": "Knead it."}]}


def _tree(root: Path) -> Path:
    """Four formats in a directory with a sub-directory, plus files a directory read skips (hidden, unsupported)."""
    (root / "sub").mkdir(parents=True)
    (root / "a.jsonl").write_text("".join(json.dumps(_chat(i)) + "\n" for i in range(10)), encoding="utf-8")
    (root / "sub" / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(_chat(i)) + "\n" for i in range(10, 20)).encode()))
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(5)], "user": ["u1"] * 5, "text": [f"parquet prompt {i}" for i in range(5)]}),
                   root / "c.parquet")
    (root / "d.csv").write_text("id,user,prompt\nr1,u2,a csv prompt\nr2,u3,another csv prompt\n", encoding="utf-8")
    (root / ".hidden.jsonl").write_text("not read\n", encoding="utf-8")
    (root / "notes.md").write_text("not read\n", encoding="utf-8")
    return root


def _read(source) -> tuple[list, IngestReport]:
    report = IngestReport()
    return list(read_conversations(source, IngestOptions(), report)), report


@pytest.fixture(scope="module")
def s3():
    with local_s3() as client:
        client.create_bucket(Bucket="logs")
        yield client


def test_a_directory_on_s3_reads_as_on_disk(s3, tmp_path):
    local = _tree(tmp_path / "in")
    upload_tree(s3, "logs", "2026/in", local)
    on_disk, disk_report = _read(local)
    for uri in ("s3://logs/2026/in/", "s3://logs/2026/in", "s3:/logs/2026/in"):  # the last: a CLI argument after pathlib
        remote, report = _read(uri)
        assert [(c.id, c.account_id, c.content_hash()) for c in remote] == [(c.id, c.account_id, c.content_hash()) for c in on_disk]
        assert (report.files, report.conversations, report.format) == (disk_report.files, disk_report.conversations, disk_report.format) == (
            4, 27, disk_report.format)
    one, _ = _read("s3://logs/2026/in/sub/b.jsonl.gz")  # a single object, gzipped
    assert [c.id for c in one] == [f"c{i}" for i in range(10, 20)]


def test_bad_input_on_s3_is_located_like_local_input(s3, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jsonl").write_text(json.dumps(_chat(1)) + "\n" + json.dumps({"id": "c2", "user": "u", "messages": [{"role": "user"}]}) + "\n",
                                 encoding="utf-8")
    upload_tree(s3, "logs", "bad", bad)
    with pytest.raises(InputError) as on_disk:
        _read(bad)
    with pytest.raises(InputError) as remote:
        _read("s3://logs/bad/")
    assert str(remote.value) == str(on_disk.value).replace(str(bad / "x.jsonl"), "s3://logs/bad/x.jsonl")
    assert "s3://logs/bad/x.jsonl:2" in str(remote.value) and "messages[0].content" in str(remote.value)
    with pytest.raises(InputError, match="no such file or directory"):
        _read("s3://logs/nothing-here/")
    with pytest.raises(InputError, match="s3://no-such-bucket/x"):
        _read("s3://no-such-bucket/x/")


def test_the_fingerprint_follows_the_objects(s3, tmp_path):
    data = tmp_path / "fp"
    data.mkdir()
    (data / "a.jsonl").write_text(json.dumps(_chat(1)) + "\n", encoding="utf-8")
    upload_tree(s3, "logs", "fp", data)
    before = file_stats("s3://logs/fp/")
    assert [name for name, _, _ in before] == ["s3://logs/fp/a.jsonl"]
    s3.put_object(Bucket="logs", Key="fp/a.jsonl", Body=(json.dumps(_chat(1)) + "\n" + json.dumps(_chat(2)) + "\n").encode())
    assert file_stats("s3://logs/fp/") != before


def test_local_paths_stay_local(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(_chat(1)) + "\n", encoding="utf-8")
    assert input_location(tmp_path) == tmp_path and not is_remote(tmp_path)
    assert input_location(f"file://{tmp_path}") == tmp_path
    assert isinstance(input_location("s3://bucket/key"), RemoteFile) and is_remote("gs://bucket/key")
    assert file_stats(tmp_path)[0][0] == str(tmp_path / "a.jsonl")


def test_validate_takes_an_s3_uri_on_the_command_line(s3, tmp_path):
    from typer.testing import CliRunner

    from convoscope.cli import app

    upload_tree(s3, "logs", "cli", _tree(tmp_path / "cli"))
    result = CliRunner().invoke(app, ["validate", "s3://logs/cli/", "--json"])  # the argument becomes a Path: "s3:/logs/cli"
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["valid"] and report["conversations"] == 27 and report["files"] == 4


def test_run_on_the_local_engine_takes_an_s3_uri_and_matches_the_same_files_on_disk(s3, tmp_path):
    """`convoscope run s3://...` on the default engine: the same conversations and clusters as the files on
    disk, the URI in the manifest, and a rerun that resumes (the objects' fingerprint is stable)."""
    from typer.testing import CliRunner

    from convoscope.cli import app
    from convoscope.store import RunStore

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text("".join(json.dumps(_chat(i, user=f"u{i % 20}")) + "\n" for i in range(120)), encoding="utf-8")
    upload_tree(s3, "logs", "run", data)
    runner = CliRunner()
    common = ["--quiet", "--no-cache", "--min-accounts", "2", "--min-conversations", "2"]
    local = runner.invoke(app, ["run", str(data), "--out", str(tmp_path / "local"), *common])
    remote = runner.invoke(app, ["run", "s3://logs/run/", "--out", str(tmp_path / "remote"), *common])
    assert local.exit_code == 0 and remote.exit_code == 0, (local.output, remote.output)
    a, b = RunStore(tmp_path / "local"), RunStore(tmp_path / "remote")
    assert b.manifest["input"].rstrip("/") == "s3://logs/run"  # the CLI argument is a Path, which drops the slash
    for table in ("conversations", "base_assignments"):
        assert a.read_table(table).equals(b.read_table(table)), table
    again = runner.invoke(app, ["run", "s3://logs/run/", "--out", str(tmp_path / "remote"), *common])
    assert again.exit_code == 0, again.output
    assert RunStore(tmp_path / "remote").manifest["input_fingerprint"] == b.manifest["input_fingerprint"]
