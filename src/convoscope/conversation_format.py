"""A conversation as a model reads it, and the batches LLM stages send (shared by the screen and
facets stages, the estimator and the benchmarks)."""

from __future__ import annotations

from typing import Iterable

from convoscope.model import Conversation
from convoscope.scrub import scrub

TRUNCATION_RULE = "conversations longer than the token budget (4 characters a token) keep their first two thirds and last third of the budget, with a marker in between"
LLM_BATCH = 256  # conversations per batch of concurrent requests; bounds memory, the cache makes batches resumable


def format_conversation(conv: Conversation, max_tokens: int, *, scrub_text: bool) -> str:
    """The conversation as the model sees it, cut to the token budget by TRUNCATION_RULE."""
    parts = []
    for m in conv.messages:
        speaker = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}[m.role]
        parts.append(f"{speaker}: {m.content}")
    text = "\n\n".join(parts)
    if scrub_text:
        text = scrub(text)
    budget = max_tokens * 4
    if len(text) > budget:
        head = text[: budget * 2 // 3]
        tail = text[-(budget // 3) :]
        text = f"{head}\n\n[... {len(text) - len(head) - len(tail)} characters omitted ...]\n\n{tail}"
    return text


def batches(items: Iterable[Conversation], size: int) -> Iterable[list[Conversation]]:
    batch: list[Conversation] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
