"""ChatGPT data export (`conversations.json`): a message tree per conversation; the current branch is read."""

from __future__ import annotations

from typing import Any

from convoscope.model import Conversation

from .record import RecordContext, RecordError, build, message, shown

_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_USED = frozenset({"mapping", "current_node", "create_time"})


def parse(rec: dict[str, Any], ctx: RecordContext) -> Conversation:
    mapping = rec.get("mapping")
    if not isinstance(mapping, dict):
        raise RecordError("missing" if mapping is None else f"expected an object, got {type(mapping).__name__}", "mapping")
    messages = [m for node_id in _current_branch(rec, mapping) if (m := _message(mapping[node_id], node_id))]
    if ctx.options.time_field is not None:
        return build(rec, ctx, messages, _USED)
    return build(rec, ctx, messages, _USED, created_at=rec.get("create_time"), time_from_record=False)


def _current_branch(rec: dict[str, Any], mapping: dict[str, Any]) -> list[str]:
    """Node ids from the root to `current_node` (the branch the user last saw), following `parent` links."""
    node_id = rec.get("current_node")
    if node_id not in mapping:
        raise RecordError(f"node {node_id!r} not in mapping", "current_node")
    path: list[str] = []
    seen: set[str] = set()
    while node_id is not None:
        if node_id in seen:
            raise RecordError(f"cycle at node {node_id!r}", "mapping")
        node = mapping.get(node_id)
        if not isinstance(node, dict):
            raise RecordError(f"parent node {node_id!r} missing", "mapping")
        seen.add(node_id)
        path.append(node_id)
        node_id = node.get("parent")
    path.reverse()
    return path


def _message(node: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    m = node.get("message")
    if m is None:
        return None
    field = f"mapping.{node_id}.message"
    if not isinstance(m, dict):
        raise RecordError(f"expected an object, got {type(m).__name__}", field)
    author = m.get("author")
    role = _ROLES.get(author.get("role")) if isinstance(author, dict) else None
    if role is None:
        raise RecordError(f"unknown author {shown(author)}", f"{field}.author.role")
    content = m.get("content")
    if not isinstance(content, dict):
        raise RecordError("missing" if content is None else "expected an object", f"{field}.content")
    parts = content.get("parts")
    if isinstance(parts, list):
        text = "\n".join(p for p in parts if isinstance(p, str))  # dict parts are images/files
    elif isinstance(content.get("text"), str):  # code, execution_output, tether_quote...
        text = content["text"]
    else:
        text = ""
    if role == "system" and not text.strip():
        return None
    name = author.get("name")
    return message(role, text, name if isinstance(name, str) else None)
