"""A conversation as a model reads it, and the batches LLM stages send (shared by the screen and
facets stages, the estimator and the benchmarks)."""

from __future__ import annotations

from typing import Iterable, Sequence

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


def approx_tokens(text: str) -> int:
    """The budget's token unit (4 characters a token, as TRUNCATION_RULE)."""
    return len(text) // 4 + 1


def call_groups(buckets: Sequence[int], tokens: Sequence[int], size: int, budget: int) -> list[list[int]]:
    """Items (by index) grouped for shared calls, in order of their first item: a group holds items of one
    bucket only, at most `size` of them, whose tokens together stay within `budget` (an item that fills
    the budget goes alone). Shared by the facets stage and the estimator, so both count the same calls."""
    groups: list[list[int]] = []
    open_group: dict[int, int] = {}  # bucket -> index in groups of its group still taking items
    used: dict[int, int] = {}  # bucket -> tokens in that group
    for i, (bucket, n) in enumerate(zip(buckets, tokens)):
        g = open_group.get(bucket)
        if g is not None and (len(groups[g]) >= size or used[bucket] + n > budget):
            g = None
        if g is None:
            open_group[bucket] = g = len(groups)
            groups.append([])
            used[bucket] = 0
        groups[g].append(i)
        used[bucket] += n
    return groups
