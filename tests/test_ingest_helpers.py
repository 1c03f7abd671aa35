"""Shared fixture builders for the ingest tests (small files written into tmp_path)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from convoscope.ingest import IngestOptions, IngestReport, read_conversations
from convoscope.model import Conversation


def write_jsonl(path: Path, records: list[Any], gz: bool = False) -> Path:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_json(path: Path, value: Any) -> Path:
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))
    return path


def read(path: Path, **options: Any) -> tuple[list[Conversation], IngestReport]:
    report = IngestReport()
    convs = list(read_conversations(path, IngestOptions(**options), report))
    for c in convs:  # readers build with model_construct: the result must still be a valid model
        Conversation.model_validate(c.model_dump())
    return convs, report


def chatgpt_conversation(i: int) -> dict[str, Any]:
    """A ChatGPT-export conversation with a regenerated answer: the current branch ends at `a2`."""
    def node(nid, parent, children, role=None, parts=None, ctype="text"):
        msg = None if role is None else {
            "author": {"role": role, "name": None}, "content": {"content_type": ctype, "parts": parts},
            "create_time": 1700000000.0 + i,
        }
        return {"id": nid, "parent": parent, "children": children, "message": msg}

    return {
        "id": f"chat-{i}", "title": f"title {i}", "create_time": 1700000000.5 + i, "update_time": 1700000100.0,
        "current_node": "a2",
        "mapping": {
            "root": node("root", None, ["sys"]),
            "sys": node("sys", "root", ["u1"], "system", [""]),
            "u1": node("u1", "sys", ["a1", "a2"], "user", [f"question {i}", {"content_type": "image_asset_pointer"}]),
            "a1": node("a1", "u1", [], "assistant", ["abandoned answer"]),
            "a2": node("a2", "u1", [], "assistant", [f"final answer {i}"]),
        },
        "moderation_results": [],
    }
