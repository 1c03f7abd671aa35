"""The one interface every stage uses to talk to a language model.

Stages build `LLMRequest`s and call `LLMClient.complete` (or `complete_many`). Backends, caching,
retries, rate limits, usage accounting and the spending cap all live behind this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class LLMRequest:
    messages: tuple[ChatMessage, ...]
    system: str | None = None
    temperature: float = 0.2
    max_tokens: int = 512
    # when set, the response is parsed and validated into `parsed`. Not to be changed once sent: its
    # validator, size and canonical JSON are memoised per schema object (stages reuse one per task).
    json_schema: dict[str, Any] | None = None
    role: str = "facets"  # which configured backend serves it: facets | naming | auditor | screener
    task: str = ""  # for usage accounting and logs: "facets", "name", "propose", "dedupe", "assign", ...
    # A check of the parsed answer beyond its schema (e.g. a small model echoing the prompt's scaffolding):
    # returns None when the answer is usable, else feedback for the model, which is asked again like a
    # schema failure. Not part of the cache key: only answers that passed it are cached.
    answer_check: Callable[[Any], str | None] | None = field(default=None, compare=False, hash=False, repr=False)


@dataclass
class Usage:
    input_tokens: int = 0  # every input token of the prompt, cached or not
    output_tokens: int = 0
    # the parts of input_tokens read from / written to the provider's prompt cache (priced apart)
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


@dataclass
class LLMResponse:
    text: str  # the full answer text
    parsed: Any = None  # the validated object when the request had a json_schema
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    failed: bool = False  # the item could not be completed (e.g. output never matched the schema)
    error: str | None = None


class LLMClient(Protocol):
    """What stages see. `complete_many` runs requests concurrently and returns responses in order;
    a failed item comes back with failed=True, never raises, unless the error is fatal for the run
    (bad key, budget cap), which raises LLMFatalError / BudgetExceeded."""

    async def complete(self, request: LLMRequest) -> LLMResponse: ...

    async def complete_many(self, requests: Sequence[LLMRequest], *, description: str = "") -> list[LLMResponse]: ...
