"""Single-prompt records: {"text" | "prompt": "...", ...} -> one user message; other fields become metadata."""

from __future__ import annotations

from typing import Any

from convoscope.model import Conversation

from .record import TEXT_FIELDS, RecordContext, RecordError, build, message, pick


def text_field(rec: dict[str, Any], explicit: str | None) -> str | None:
    name, value = pick(rec, explicit, TEXT_FIELDS)
    return name if isinstance(value, str) else None


def parse(rec: dict[str, Any], ctx: RecordContext) -> Conversation:
    name, text = pick(rec, ctx.options.text_field, TEXT_FIELDS)
    field = name or ctx.options.text_field or "text"
    if not isinstance(text, str):
        raise RecordError("missing" if text is None else f"expected a string, got {type(text).__name__}", field)
    if not text.strip():
        raise RecordError("empty text", field)
    return build(rec, ctx, [message("user", text)], {field})
