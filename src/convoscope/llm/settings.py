"""The `[llm]` table of the configuration, and the backend spec strings it holds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from convoscope.errors import ConfigError

BACKEND_KINDS = ("anthropic", "openai", "llamacpp", "vllm")
ROLES = ("facets", "screener", "naming", "auditor")
BATCH_ROLES = ("facets", "screener", "auditor")  # one call per conversation or cluster, none waiting on another


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    facets: str = Field(
        "none",
        description="Backend for facet extraction and the screener: 'none', 'anthropic:MODEL[@URL]', "
        "'openai:MODEL[@BASE_URL]', 'llamacpp:/path/model.gguf' or 'vllm:MODEL'.",
    )
    naming: str | None = Field(None, description="Backend for cluster naming and the hierarchy; unset: same as facets.")
    auditor: str | None = Field(None, description="Backend for the privacy auditor; unset: same as naming.")
    max_concurrency: int = Field(
        64, ge=1, description="Most requests in flight at once (per client); halved after a rate limit (429/529), grown back one at a time after successes."
    )
    requests_per_minute: float | None = Field(None, gt=0, description="Optional cap on requests per minute (token bucket).")
    tokens_per_minute: float | None = Field(
        None, gt=0, description="Optional cap on tokens per minute, counting estimated input plus max_tokens (token bucket)."
    )
    max_retries: int = Field(6, ge=0, description="Retries per request on 429, 5xx, 529, timeouts and dropped connections.")
    retry_initial_s: float = Field(1.0, ge=0, description="First backoff delay; doubles per retry, with full jitter.")
    retry_max_s: float = Field(60.0, ge=0, description="Longest backoff delay (a server's Retry-After may ask for more).")
    schema_retries: int = Field(2, ge=0, description="Extra attempts when structured output does not match its JSON schema.")
    timeout_s: float = Field(120, gt=0, description="Timeout of one HTTP request, in seconds.")
    cache: bool = Field(True, description="Cache responses on disk (keyed by a hash; prompts are never stored).")
    cache_dir: Path | None = Field(
        None, description="Cache directory; unset: $CONVOSCOPE_CACHE_DIR, else $XDG_CACHE_HOME/convoscope, else ~/.cache/convoscope."
    )
    max_cost_usd: float | None = Field(None, gt=0, description="Spending cap for one run; a request that could cross it is not sent.")
    prices: dict[str, tuple[float, float] | tuple[float, float, float] | tuple[float, float, float, float]] = Field(
        default_factory=dict,
        description="Model -> [USD per 1M input tokens, per 1M output tokens, optionally per 1M cache-read and cache-write "
        "input tokens (default: the vendor's rule)]; merged over the built-in table.",
    )
    batch: bool = Field(
        False,
        description="Send the per-conversation calls (facets, screener) and the audits through the provider's batch API "
        "(Anthropic Message Batches, OpenAI Batch API): half price, answers within 24 hours; batch ids are kept in the run "
        "directory so an interrupted run resumes polling. Naming and the hierarchy stay live.",
    )
    batch_poll_s: float = Field(15.0, gt=0, description="First wait between batch status polls; grows by half each poll.")
    batch_poll_max_s: float = Field(300.0, gt=0, description="Longest wait between batch status polls.")
    batch_max_items: int | None = Field(None, ge=1, description="Most requests per batch (default: the provider's limit).")
    batch_resubmits: int = Field(2, ge=0, description="Rounds of resubmitting batch items that expired or met a server error.")
    local_context_tokens: int = Field(8192, ge=512, description="Context window for in-process models (llamacpp, vllm).")

    @property
    def enabled(self) -> bool:
        return self.facets.strip() != "none"

    def spec_for(self, role: str) -> str:
        """The spec string serving a request role (the screener shares the facets backend)."""
        if role in ("facets", "screener"):
            return self.facets
        if role == "naming":
            return self.naming or self.facets
        if role == "auditor":
            return self.auditor or self.naming or self.facets
        raise ConfigError(f"unknown LLM role '{role}' (expected one of {', '.join(ROLES)})")

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir.expanduser()
        if env := os.environ.get("CONVOSCOPE_CACHE_DIR"):
            return Path(env).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "convoscope"


@dataclass(frozen=True)
class BackendSpec:
    kind: str  # anthropic | openai | llamacpp | vllm
    model: str
    base_url: str | None = None  # only for the HTTP backends; None means the vendor's public API

    def __str__(self) -> str:
        return f"{self.kind}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")


def parse_spec(spec: str) -> BackendSpec | None:
    """'kind:MODEL[@URL]' -> BackendSpec; 'none' -> None. Model names may hold ':' (Ollama tags) and '@'
    (only a trailing '@http(s)://...' is taken as the URL)."""
    spec = spec.strip()
    if spec == "none":
        return None
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in BACKEND_KINDS or not rest:
        raise ConfigError(
            f"invalid LLM backend spec '{spec}': expected 'none', 'anthropic:MODEL', 'openai:MODEL[@BASE_URL]', "
            "'llamacpp:/path/model.gguf' or 'vllm:MODEL'"
        )
    model, base_url = rest, None
    at = rest.rfind("@")
    if at > 0 and rest[at + 1 :].startswith(("http://", "https://")):
        model, base_url = rest[:at], rest[at + 1 :].rstrip("/")
        if kind not in ("anthropic", "openai"):
            raise ConfigError(f"invalid LLM backend spec '{spec}': only anthropic and openai take a URL")
        if not urlparse(base_url).netloc:
            raise ConfigError(f"invalid URL in LLM backend spec '{spec}'")
    return BackendSpec(kind, model, base_url)
