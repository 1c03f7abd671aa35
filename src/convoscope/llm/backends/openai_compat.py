"""OpenAI Chat Completions over httpx, for OpenAI itself and any compatible server
(vLLM, Ollama, llama.cpp server, LM Studio, ...).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse


from convoscope.errors import ConfigError
from convoscope.llm.backends import Completion, TransientError
from convoscope.llm.backends.http import post_json
from convoscope.llm.base import LLMRequest, Usage
from convoscope.llm.settings import BackendSpec

if TYPE_CHECKING:
    from convoscope.llm.client import HttpPool

DEFAULT_URL = "https://api.openai.com/v1"


# Prefill is gone from LLMRequest; backends/llamacpp.py (engineer B's file) still imports these two
# names, so they stay as no-ops until it no longer does. Delete them then.
def prefill_instruction(prefill: str) -> str:  # pragma: no cover - transitional
    return ""


def with_prefill(text: str, prefill: str | None) -> str:  # pragma: no cover - transitional
    return text


def answer_of(data: dict[str, Any]) -> Completion:
    """A Chat Completions response (live, or one batch output line's body) as a Completion. OpenAI caches
    prompt prefixes of 1024 tokens and more by itself; `prompt_tokens` includes the cached part."""
    try:
        text = data["choices"][0]["message"]["content"] or ""
        usage_data = data.get("usage") or {}
        cached = int((usage_data.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        usage = Usage(int(usage_data.get("prompt_tokens", 0)), int(usage_data.get("completion_tokens", 0)), cache_read_tokens=cached)
    except (KeyError, IndexError, TypeError, ValueError):
        raise TransientError("the server sent an unexpected response shape") from None
    return Completion(text, usage)


class OpenAICompatBackend:
    local = False

    def __init__(self, spec: BackendSpec, http: HttpPool):
        self.spec = spec
        self._http = http
        base = spec.base_url or DEFAULT_URL
        if urlparse(base).path in ("", "/"):
            base = base.rstrip("/") + "/v1"  # "http://localhost:8000" means the usual /v1 root
        self.url = base.rstrip("/") + "/chat/completions"
        self.official = spec.base_url is None
        key = os.environ.get("OPENAI_API_KEY")
        if not key and self.official:
            raise ConfigError(f"OPENAI_API_KEY is not set (needed by '{spec}')")
        self._headers = {"authorization": f"Bearer {key}"} if key else {}

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {"model": self.spec.model, "messages": messages, "temperature": request.temperature}
        # OpenAI's newer models accept only max_completion_tokens; compatible servers know max_tokens.
        body["max_completion_tokens" if self.official else "max_tokens"] = request.max_tokens
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": re.sub(r"[^A-Za-z0-9_-]", "_", request.task)[:64] or "answer", "schema": request.json_schema, "strict": True},
            }
        return body

    async def complete(self, request: LLMRequest) -> Completion:
        key_env = "OPENAI_API_KEY" if self._headers else None
        data = await post_json(self._http.client(), self.url, self._headers, self.request_body(request), key_env=key_env, model=self.spec.model)
        return answer_of(data)

    async def aclose(self) -> None:
        return None
