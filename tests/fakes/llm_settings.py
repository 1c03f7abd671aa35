"""LLM settings for tests: retries in milliseconds (and batch polling, where asked), the cache under the test's dir."""

from __future__ import annotations

from pathlib import Path

from convoscope.llm import LLMSettings

FAST_RETRIES = {"retry_initial_s": 0.01, "retry_max_s": 0.05}
FAST_BATCH_POLLING = {"batch_poll_s": 0.01, "batch_poll_max_s": 0.02}


def fast_settings(spec: str, tmp_path: Path, **overrides) -> LLMSettings:
    """Settings for the backend `spec` whose retries (and batch polls) take milliseconds, not seconds."""
    fast = {**FAST_RETRIES, **FAST_BATCH_POLLING} if overrides.get("batch") else FAST_RETRIES
    return LLMSettings(facets=spec, cache_dir=tmp_path / "cache", **{**fast, **overrides})
