"""Anthropic HH-RLHF transcripts: "\\n\\nHuman: ...\\n\\nAssistant: ..." strings (the `chosen` side is read)."""

from __future__ import annotations

import re
from typing import Any

from convoscope.model import Conversation

from .record import RecordContext, RecordError, build, message

# `rejected` is the alternative transcript of the same dialogue, not metadata.
TRANSCRIPT_FIELDS = ("chosen", "text", "transcript")
_USED = frozenset({"chosen", "rejected", "text", "transcript"})
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def transcript_field(rec: dict[str, Any]) -> str | None:
    for name in TRANSCRIPT_FIELDS:
        value = rec.get(name)
        if isinstance(value, str) and is_transcript(value):
            return name
    return None


def is_transcript(text: str) -> bool:
    return text.lstrip(" \n").startswith("Human:")


def parse(rec: dict[str, Any], ctx: RecordContext) -> Conversation:
    field = transcript_field(rec)
    if field is None:
        raise RecordError('missing transcript (a string starting with "Human:")', "chosen")
    text = rec[field]
    parts = _TURN.split("\n\n" + text.lstrip(" \n"))
    # parts = [prefix, speaker, text, speaker, text, ...]; the prefix is empty by construction.
    messages = [message(_ROLES[parts[i]], parts[i + 1].strip()) for i in range(1, len(parts), 2)]
    if not messages:
        raise RecordError("no Human/Assistant turns", field)
    return build(rec, ctx, messages, _USED)
