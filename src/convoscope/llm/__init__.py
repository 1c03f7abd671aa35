"""The LLM layer: one interface (`base.py`) over every backend, with caching, retries, limits,
usage and cost accounting, and a spending cap. See docs/llm.md."""

from convoscope.llm.base import ChatMessage, LLMClient, LLMRequest, LLMResponse, Usage
from convoscope.llm.client import Client, build_client
from convoscope.llm.estimate import CallPlan, estimate
from convoscope.llm.settings import LLMSettings

__all__ = [
    "CallPlan",
    "ChatMessage",
    "Client",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "LLMSettings",
    "Usage",
    "build_client",
    "estimate",
]
