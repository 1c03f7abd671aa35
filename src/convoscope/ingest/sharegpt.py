"""ShareGPT: {"conversations": [{"from": "human"|"gpt"|..., "value": ...}]}."""

from __future__ import annotations

from typing import Any

from convoscope.model import Conversation

from .record import RecordContext, RecordError, build, message, require_list, require_str, shown

ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant",
    "model": "assistant", "function_call": "assistant",  # glaive-style: the model calling a tool
    "system": "system",
    "tool": "tool", "function": "tool", "observation": "tool",
}  # fmt: skip
_USED = frozenset({"conversations"})


def parse(rec: dict[str, Any], ctx: RecordContext) -> Conversation:
    raw = require_list(rec, "conversations")
    messages = []
    for i, turn in enumerate(raw):
        field = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(f"expected an object, got {type(turn).__name__}", field)
        speaker = turn.get("from", turn.get("role"))
        role = ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
        if role is None:
            raise RecordError(f"unknown speaker {shown(speaker)} (expected human, gpt, system or tool)", f"{field}.from")
        messages.append(message(role, require_str(turn, "value", f"{field}.value")))
    return build(rec, ctx, messages, _USED)
