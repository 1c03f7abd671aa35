"""The shared sample datasets validate, with the counts we expect."""

from __future__ import annotations

from pathlib import Path

import pytest

from convoscope.ingest import IngestOptions, validate_input

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared sample data not available")


# (file, format, lines/dialogues in the file, exact duplicate texts in it)
@pytest.mark.parametrize("rel, fmt, records, duplicates", [
    ("clinc150/clinc150.jsonl", "prompt", 23_700, 5),
    ("banking77/banking77.jsonl", "prompt", 13_083, 11),
    ("arena-hard-v2/question.jsonl", "prompt", 750, 0),
    ("hh-rlhf-harmless/harmless-base-test.jsonl.gz", "hh", 2_312, 0),
])
def test_sample_file_validates(rel, fmt, records, duplicates):
    report = validate_input(DATA / rel, IngestOptions())
    assert report.format == fmt and report.invalid == 0 and report.files == 1
    assert report.duplicates == duplicates
    assert report.conversations + report.duplicates == records  # nothing dropped silently
    assert report.missing_account and report.accounts == report.conversations  # none of them has user ids
    if fmt == "prompt":
        assert report.messages == report.conversations
    else:
        assert report.messages > 2 * report.conversations  # multi-turn dialogues


def test_whole_data_directory(tmp_path):
    # a directory holding the four sets used here (the shared data directory grows over time)
    for name in ("clinc150", "banking77", "arena-hard-v2", "hh-rlhf-harmless"):
        (tmp_path / name).mkdir()
        for f in (DATA / name).iterdir():
            (tmp_path / name / f.name).symlink_to(f)
    report = validate_input(tmp_path, IngestOptions())
    assert report.conversations == 23_695 + 13_072 + 750 + 2_312
    assert report.files == 4 and set(report.format.split(",")) == {"prompt", "hh"}
    assert any("domains.json" in s for s in report.skipped_files)  # clinc150's label map is not conversations
