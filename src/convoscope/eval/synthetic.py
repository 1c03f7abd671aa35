"""Labelled synthetic conversations, made the way the paper made its reconstruction set.

Top-level categories are given (written by people). The LLM then (1) proposes subcategories for each
category, (2) writes one opening user prompt per conversation, with its length, tone and language
drawn at random, and (3) writes the whole conversation from that prompt. The output is JSONL in the
OpenAI message format with metadata `category`, `subcategory`, `language` (plus `tone`, `length`),
which `convoscope eval reconstruction FILE --label-field subcategory --parent-field category` reads.
Every conversation has its own synthetic account id, so the privacy thresholds see distinct users.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from convoscope.eval.common import complete_all
from convoscope.llm import ChatMessage, LLMRequest, LLMSettings

LENGTHS = ("one short sentence", "two or three sentences", "a detailed paragraph of five or more sentences")
TONES = ("casual", "formal", "frustrated", "curious", "terse", "friendly", "anxious", "playful")
SYSTEM = "You write realistic, varied test data for evaluating a system that clusters conversations with an AI assistant."

SUB_SCHEMA = {"type": "object", "properties": {"subcategories": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
              "required": ["subcategories"], "additionalProperties": False}
PROMPT_SCHEMA = {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"], "additionalProperties": False}
CONV_SCHEMA = {"type": "object", "properties": {"messages": {"type": "array", "minItems": 2, "items": {
    "type": "object", "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": {"type": "string"}},
    "required": ["role", "content"], "additionalProperties": False}}}, "required": ["messages"], "additionalProperties": False}


def _request(text: str, schema: dict[str, Any], task: str, max_tokens: int) -> LLMRequest:
    return LLMRequest(messages=(ChatMessage("user", text),), system=SYSTEM, temperature=1.0, max_tokens=max_tokens, json_schema=schema,
                      role="facets", task=task)


def subcategory_request(category: str, n: int) -> LLMRequest:
    return _request(f"List {n} distinct, specific subcategories of things people ask an AI assistant about within the category "
                    f"\"{category}\". Each subcategory is a short noun phrase. They must not overlap.", SUB_SCHEMA, "synth-subcategories", 600)


def prompt_request(category: str, subcategory: str, language: str, tone: str, length: str) -> LLMRequest:
    return _request(f"Write the first message a user might send to an AI assistant about \"{subcategory}\" (category: {category}).\n"
                    f"Language: {language}. Tone: {tone}. Length: {length}.\n"
                    "Make it specific and natural, as a real person would type it; do not mention the category name verbatim. "
                    "Invent no real person's name or contact details.", PROMPT_SCHEMA, "synth-prompt", 800)


def conversation_request(prompt: str, language: str) -> LLMRequest:
    return _request("Write a realistic conversation between a user and an AI assistant that starts with this user message:\n"
                    f"<message>{prompt}</message>\n\nThe first message must be exactly that text. Use between 2 and 6 messages, "
                    f"alternating user and assistant, in {language}.", CONV_SCHEMA, "synth-conversation", 2000)


def _clean_messages(raw: Any, prompt: str) -> list[dict[str, str]] | None:
    if not isinstance(raw, list):
        return None
    messages = [{"role": m["role"], "content": str(m["content"]).strip()} for m in raw
                if isinstance(m, dict) and m.get("role") in ("user", "assistant") and str(m.get("content", "")).strip()]
    if not messages:
        return None
    if messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": prompt})
    return messages


def synthesize(categories: list[str], settings: LLMSettings, out: str | Path, *, per_category: int = 20, n_subcategories: int = 4,
               languages: list[str] | None = None, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Write the labelled JSONL file; returns counts. Failed requests are skipped (and counted)."""
    languages = languages or ["English"]
    rng = np.random.default_rng(seed)
    failed = 0
    # 1. subcategories
    subs: dict[str, list[str]] = {}
    for cat, resp in zip(categories, complete_all(settings, [subcategory_request(c, n_subcategories) for c in categories],
                                                  "Subcategories", progress)):
        names = []
        if not resp.failed and isinstance(resp.parsed, dict):
            names = list(dict.fromkeys(" ".join(str(s).split()) for s in resp.parsed["subcategories"] if str(s).strip()))[:n_subcategories]
        if not names:
            failed += 1
            names = [cat]
        subs[cat] = names
    # 2. opening prompts, varied in length, tone and language
    plan = []
    for cat in categories:
        for i in range(per_category):
            plan.append({"category": cat, "subcategory": subs[cat][i % len(subs[cat])], "language": languages[len(plan) % len(languages)],
                         "tone": TONES[int(rng.integers(len(TONES)))], "length": ["short", "medium", "long"][int(rng.integers(3))]})
    lengths = dict(zip(("short", "medium", "long"), LENGTHS))
    prompts = complete_all(settings, [prompt_request(p["category"], p["subcategory"], p["language"], p["tone"], lengths[p["length"]]) for p in plan],
                           "Prompts", progress)
    kept = []
    for p, resp in zip(plan, prompts):
        text = resp.parsed.get("prompt") if (not resp.failed and isinstance(resp.parsed, dict)) else None
        if text and str(text).strip():
            kept.append({**p, "prompt": str(text).strip()})
        else:
            failed += 1
    # 3. whole conversations
    convs = complete_all(settings, [conversation_request(p["prompt"], p["language"]) for p in kept], "Conversations", progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("w", encoding="utf-8") as fh:
        for p, resp in zip(kept, convs):
            messages = _clean_messages(resp.parsed.get("messages") if (not resp.failed and isinstance(resp.parsed, dict)) else None, p["prompt"])
            if messages is None:
                failed += 1
                continue
            record = {"id": f"synthetic-{written:06d}", "user": f"synthetic-account-{written:06d}", "messages": messages,
                      "metadata": {k: p[k] for k in ("category", "subcategory", "language", "tone", "length")}}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
    return {"conversations": written, "failed": failed, "subcategories": subs, "file": str(out)}
