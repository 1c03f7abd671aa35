"""JSON arrays are parsed incrementally: memory stays far below the file size."""

from __future__ import annotations

import tracemalloc

import orjson
from test_ingest_helpers import chatgpt_conversation

from convoscope.ingest import IngestOptions, IngestReport, read_conversations

N = 20_000


def _big_export(path):
    padding = "lorem ipsum " * 80  # ~1 KB per conversation on top of the tree
    with open(path, "wb") as f:  # written piecewise so the test itself does not hold the whole array either
        f.write(b"[")
        for i in range(N):
            conv = chatgpt_conversation(i)
            conv["mapping"]["a2"]["message"]["content"]["parts"] = [f"answer {i} {padding}"]
            f.write((b"," if i else b"") + orjson.dumps(conv))
        f.write(b"]")
    return path


def test_chatgpt_export_streams(tmp_path):
    path = _big_export(tmp_path / "conversations.json")
    size = path.stat().st_size
    assert size > 30_000_000

    tracemalloc.start()
    try:
        first = next(read_conversations(path, IngestOptions()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The first conversation arrives before the file is parsed, and without holding it in memory.
    assert first.id == "chat-0"
    assert peak < 2_000_000, f"peak {peak} bytes for a {size}-byte file"

    report = IngestReport()
    count = sum(1 for _ in read_conversations(path, IngestOptions(), report))
    assert count == N and report.conversations == N and report.format == "chatgpt_export"
