"""Claude.ai data export (`conversations.json`): [{"uuid", "name", "account": {"uuid"}, "chat_messages": [...]}]."""

from __future__ import annotations

from typing import Any

from convoscope.model import Conversation

from .record import RecordContext, RecordError, build, message, shown, text_of_parts

_ROLES = {"human": "user", "assistant": "assistant"}
_USED = frozenset({"chat_messages", "account"})


def parse(rec: dict[str, Any], ctx: RecordContext) -> Conversation:
    raw = rec.get("chat_messages")
    if not isinstance(raw, list):
        raise RecordError("missing" if raw is None else f"expected a list, got {type(raw).__name__}", "chat_messages")
    messages = []
    for i, m in enumerate(raw):
        field = f"chat_messages[{i}]"
        if not isinstance(m, dict):
            raise RecordError(f"expected an object, got {type(m).__name__}", field)
        role = _ROLES.get(m.get("sender"))  # type: ignore[arg-type]
        if role is None:
            raise RecordError(f"unknown sender {shown(m.get('sender'))} (expected human or assistant)", f"{field}.sender")
        messages.append(message(role, _text(m, field)))
    if not messages:
        raise RecordError("conversation has no messages", "chat_messages")
    account = rec.get("account")
    account_id = account.get("uuid") if isinstance(account, dict) else account
    explicit = ctx.options.account_field is not None
    return build(rec, ctx, messages, _USED, account=account_id, account_from_record=explicit)


def _text(m: dict[str, Any], field: str) -> str:
    # Newer exports put the text in typed `content` blocks (with tool use between them); older ones only in `text`.
    content = m.get("content")
    if isinstance(content, list) and content:
        joined = text_of_parts(content, f"{field}.content")
        if joined:
            return joined
    text = m.get("text")
    if isinstance(text, str):
        return text
    if text is None and isinstance(content, list):
        return ""
    raise RecordError("missing" if text is None else f"expected a string, got {type(text).__name__}", f"{field}.text")
