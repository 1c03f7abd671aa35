"""OpenAI chat format: {"messages": [{"role", "content", "name"?, "tool_calls"?}], "id"?, "user"?, ...}."""

from __future__ import annotations

from typing import Any

from convoscope.model import Conversation

from .record import RecordContext, RecordError, build, message, require_list, shown, text_of_parts

# Newer or legacy role names folded onto the model's four roles.
ROLES = {
    "system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool", "function": "tool",
}  # fmt: skip
_PLAIN_ROLES = frozenset({"system", "user", "assistant", "tool"})
_USED = frozenset({"messages"})


def parse(rec: dict[str, Any], ctx: RecordContext) -> Conversation:
    raw = require_list(rec, "messages")
    return build(rec, ctx, [parse_message(m, f"messages[{i}]") for i, m in enumerate(raw)], _USED)


def parse_message(m: Any, field: str) -> dict[str, Any]:
    if type(m) is dict and len(m) == 2 and type(m.get("content")) is str and m.get("role") in _PLAIN_ROLES:
        return m  # the common case needs no rewriting; `build` validates it
    if not isinstance(m, dict):
        raise RecordError(f"expected an object, got {type(m).__name__}", field)
    role = ROLES.get(m.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise RecordError(f"unknown role {shown(m.get('role'))} (expected one of {', '.join(ROLES)})", f"{field}.role")
    content = m.get("content")
    tool_calls = _tool_calls(m.get("tool_calls"), f"{field}.tool_calls")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = text_of_parts(content, f"{field}.content")
    elif content is None and (tool_calls or m.get("function_call") is not None):
        text = ""  # an assistant turn that only calls tools
    else:
        raise RecordError("missing" if content is None else f"expected a string or list, got {type(content).__name__}",
                          f"{field}.content")
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise RecordError(f"expected a string, got {type(name).__name__}", f"{field}.name")
    return message(role, text, name, tool_calls)


def _tool_calls(raw: Any, field: str) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise RecordError(f"expected a list, got {type(raw).__name__}", field)
    calls = []
    for i, call in enumerate(raw):
        if not isinstance(call, dict):
            raise RecordError(f"expected an object, got {type(call).__name__}", f"{field}[{i}]")
        # OpenAI nests name/arguments under "function"; keep id/type as extra fields.
        flat = {k: v for k, v in call.items() if k != "function"}
        if isinstance(call.get("function"), dict):
            flat.update(call["function"])
        calls.append(flat)
    return calls
