"""Format detection from content: the file's first bytes pick the container, its first record the format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convoscope.text import clean_text

from . import hh, prompt
from .files import PARQUET_MAGIC, RemoteFile
from .options import FORMATS, IngestOptions
from .record import SHOWN_CHARS, TEXT_FIELDS, shown

_TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
RECORD_FORMATS = tuple(f for f in FORMATS if f not in ("csv", "parquet"))


def detect_container(path: Path | RemoteFile, head: bytes, options: IngestOptions) -> str | None:
    """"parquet", "csv", "jsonl", "json" (one document: array or object), or None when the file is empty."""
    if head.startswith(PARQUET_MAGIC) or options.format == "parquet":
        return "parquet"
    if options.format == "csv" or path.name.lower().endswith(_TABLE_SUFFIXES):
        return "csv"
    start = head.lstrip()
    if not start:
        return None
    if start[:1] == b"[":
        return "json"
    if start[:1] == b"{":
        # One complete object on the first line means JSON Lines; otherwise a (pretty-printed) document.
        first_line, newline, _ = start.partition(b"\n")
        return "jsonl" if not newline or first_line.rstrip().endswith(b"}") else "json"
    return "jsonl"  # not JSON at all: the reader reports the first line as malformed


def detect_record(rec: dict[str, Any], options: IngestOptions) -> str | None:
    """The record format of one parsed JSON object, or None if it matches none."""
    if isinstance(rec.get("mapping"), dict):
        return "chatgpt_export"
    if "chat_messages" in rec:
        return "claude_export"
    if isinstance(rec.get("conversations"), list):
        return "sharegpt"
    if isinstance(rec.get("messages"), list):
        return "openai"
    if hh.transcript_field(rec):
        return "hh"
    if prompt.text_field(rec, options.text_field):
        return "prompt"
    return None


def describe_unknown(rec: Any) -> str:
    if not isinstance(rec, dict):
        return f"unknown format: first record is a JSON {type(rec).__name__}, not an object"
    # keys are data too (a text used as a key): long ones are described, not shown
    keys = ", ".join(clean_text(k) if len(k) <= SHOWN_CHARS else shown(k) for k in list(rec)[:10]) or "none"
    return (
        f"unknown format: first record has fields ({keys}){_wrong_type(rec)}; expected one of {', '.join(FORMATS)} "
        "(set the format explicitly, or text_field for single-prompt data)"
    )


# A field that names a format, with the JSON type that format needs: present with another type, it is the
# likely mistake, and "unknown format" alone would not say so.
_FORMAT_FIELDS = {"messages": list, "conversations": list, "mapping": dict, **{name: str for name in TEXT_FIELDS}}
_JSON_TYPES = {list: "an array", dict: "an object", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def _wrong_type(rec: dict[str, Any]) -> str:
    for name, wanted in _FORMAT_FIELDS.items():
        value = rec.get(name)
        if value is not None and not isinstance(value, wanted):
            return f", but field '{name}' is {_JSON_TYPES.get(type(value), type(value).__name__)}, not {_JSON_TYPES[wanted]}"
    return ""
