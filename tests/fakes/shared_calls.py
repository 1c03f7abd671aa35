"""Shared facets calls (several conversations in one call, `facets.conversations_per_call`) for fake models
that answer one conversation at a time.

    responder = answer_shared_calls(make_responder())

A shared call's user message holds `<conversation id="c1">...</conversation>` blocks and its schema
one property per id. The wrapper asks the inner responder once per conversation, with the body of a
one-conversation call (the `<conversation>` tags and the entry schema, in the body's own protocol),
and returns one JSON object keyed by the ids: a model that keeps conversations apart. Any other
request goes to the inner responder unchanged.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable

from fakes.llm_servers import last_user_text, schema_of

SHARED_ID = re.compile(r"c\d+")
BLOCK = re.compile(r'<conversation id="(c\d+)">\n(.*?)\n</conversation>', re.S)


def shared_call_ids(body: dict[str, Any]) -> list[str]:
    """The conversation ids of a shared facets call, or [] for any other request."""
    schema = schema_of(body) or {}
    props = schema.get("properties", {})
    if len(props) < 2 or not all(SHARED_ID.fullmatch(k) for k in props):
        return []
    return list(props)


def shared_conversations(text: str) -> dict[str, str]:
    """id -> conversation text of a shared call's user message."""
    return dict(BLOCK.findall(text))


def entry_schema(schema: dict[str, Any], cid: str) -> dict[str, Any]:
    """The schema of one entry of a shared call (its `$ref` resolved)."""
    entry = schema["properties"][cid]
    ref = entry.get("$ref", "")
    return schema["$defs"][ref.rsplit("/", 1)[-1]] if ref.startswith("#/$defs/") else entry


def single_body(body: dict[str, Any], conversation: str, entry_schema: dict[str, Any]) -> dict[str, Any]:
    """The body of a one-conversation facets call, in the protocol of `body` (OpenAI or Anthropic)."""
    out = copy.deepcopy(body)
    text = f"<conversation>\n{conversation}\n</conversation>"
    for message in reversed(out.get("messages", [])):
        if message.get("role") == "user":
            message["content"] = text if isinstance(message.get("content"), str) else [{"type": "text", "text": text}]
            break
    if (out.get("response_format") or {}).get("type") == "json_schema":
        out["response_format"]["json_schema"]["schema"] = entry_schema
    for tool in out.get("tools", []):
        if tool.get("name") == (out.get("tool_choice") or {}).get("name"):
            tool["input_schema"] = entry_schema
    return out


def answer_shared_calls(responder: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    def wrapped(body: dict[str, Any]) -> str:
        ids = shared_call_ids(body)
        if not ids:
            return responder(body)
        schema = schema_of(body) or {}
        conversations = shared_conversations(last_user_text(body))
        answer = {}
        for cid in ids:
            if cid in conversations:
                answer[cid] = json.loads(responder(single_body(body, conversations[cid], entry_schema(schema, cid))))
        return json.dumps(answer)

    return wrapped
