"""What a run will cost before it runs: token counts, calls per stage, dollars and time. No network.

The call model (`CallPlan`) mirrors the pipeline's prompts with round numbers; it is a planning aid,
honest to within tens of percent, not an invoice. Tokens are counted with tiktoken's cl100k_base
when tiktoken is installed, else approximated as characters / 4 (the result says which).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, Callable, Iterable

from pydantic import BaseModel, Field

from convoscope.llm.base import LLMRequest
from convoscope.llm.settings import LLMSettings, parse_spec
from convoscope.llm.usage import PriceTable
from convoscope.model import Conversation


def approx_tokens(text: str) -> int:
    """Fast estimate for the hot path (rate limits, budget reservations): UTF-8 bytes / 4, which
    over-counts non-Latin scripts a little rather than under-counting them."""
    return (len(text.encode("utf-8")) + 3) // 4


def approx_request_tokens(request: LLMRequest) -> int:
    text = (request.system or "") + "".join(m.content for m in request.messages)
    schema = json.dumps(request.json_schema) if request.json_schema is not None else ""
    return approx_tokens(text) + approx_tokens(schema) + 4 * (len(request.messages) + 1)  # + per-message framing


@lru_cache(maxsize=1)
def token_counter() -> tuple[str, Callable[[str], int]]:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base")
        return "tiktoken cl100k_base", lambda text: len(encoding.encode(text, disallowed_special=()))
    except Exception:  # not installed, or its vocabulary cannot be fetched offline
        return "characters / 4 (tiktoken not installed)", lambda text: (len(text) + 3) // 4


class CallPlan(BaseModel):
    """The pipeline's LLM calls, as a model for estimates."""

    facet_overhead_tokens: int = Field(700, description="Facet prompt tokens besides the conversation (instructions, questions).")
    max_conversation_tokens: int = Field(6000, description="Conversations are truncated to this many tokens in the facet prompt.")
    facet_output_tokens: int = Field(200, description="Answer tokens per facet call.")
    facet_calls_per_conversation: int = Field(1, description="1 when all facets share one call; the number of facets otherwise.")
    screen: bool = Field(False, description="A screener question is asked of every conversation first.")
    screen_output_tokens: int = Field(5, description="A yes/no answer.")
    conversations_per_cluster: int = Field(100, description="Average base cluster size: base clusters = conversations / this.")
    naming_summaries: int = Field(100, description="Summaries shown to the namer per base cluster (inside and near it).")
    summary_tokens: int = Field(40, description="Tokens per summary.")
    naming_overhead_tokens: int = Field(500, description="Naming prompt tokens besides the summaries.")
    naming_output_tokens: int = Field(150, description="A name and a two-sentence description.")
    levels: int | None = Field(None, description="hierarchy.levels: levels including the base (None: the pipeline's default).")
    top_clusters: int | None = Field(None, description="hierarchy.top_clusters: wanted top-level clusters (None: the pipeline's default).")
    neighbourhood_size: int = Field(40, description="Clusters per neighbourhood in the propose step.")
    cluster_tokens: int = Field(60, description="Tokens of one cluster's name and description in hierarchy and audit prompts.")
    hierarchy_output_tokens: int = Field(300, description="Answer tokens per hierarchy call.")
    audit_overhead_tokens: int = Field(400, description="Privacy audit prompt tokens besides the cluster.")
    audit_output_tokens: int = Field(60, description="A rating and a short reason.")
    seconds_per_call: float = Field(3.0, description="Typical latency of one call, for the time estimate.")


def _stage(calls: int, input_tokens: int, output_tokens: int, spec: str, prices: PriceTable) -> dict[str, Any]:
    parsed = parse_spec(spec)
    local = parsed is None or parsed.kind in ("llamacpp", "vllm")
    model = None if local else parsed.model
    known = prices.lookup(model) is not None
    return {
        "backend": spec,
        "calls": calls,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": round(prices.cost(model, input_tokens, output_tokens), 4),
        "price_known": known,
    }


def _base_clusters(n: int, plan: CallPlan) -> int:
    from convoscope.config import ClusterSettings
    from convoscope.hierarchy_levels import choose_k

    return choose_k(n, ClusterSettings(conversations_per_cluster=plan.conversations_per_cluster)) if n else 0


def _level_sizes(base_clusters: int, plan: CallPlan) -> list[int]:
    """Clusters per level, base first: the hierarchy stage's own rule (hierarchy_levels.level_sizes)."""
    # imported here: convoscope.config imports the LLM package, which imports this module
    from convoscope.config import HierarchySettings
    from convoscope.hierarchy_levels import level_sizes

    if base_clusters == 0:
        return [0]
    return level_sizes(base_clusters, HierarchySettings(levels=plan.levels, top_clusters=plan.top_clusters,
                                                         neighbourhood_size=plan.neighbourhood_size))


def _hierarchy_calls(sizes: list[int], plan: CallPlan) -> tuple[int, int, int]:
    """Per level: propose (one call per neighbourhood), dedupe (one), assign (one per child), rename (one per parent)."""
    calls = input_tokens = output_tokens = 0
    for children, parents in zip(sizes, sizes[1:]):
        neighbourhoods = math.ceil(children / plan.neighbourhood_size)
        propose_in = children * plan.cluster_tokens + neighbourhoods * plan.naming_overhead_tokens
        dedupe_in = plan.naming_overhead_tokens + neighbourhoods * plan.hierarchy_output_tokens
        assign_in = children * (plan.naming_overhead_tokens + plan.cluster_tokens + parents * plan.summary_tokens)
        rename_in = parents * plan.naming_overhead_tokens + children * plan.cluster_tokens  # each child shown to one parent
        calls += neighbourhoods + 1 + children + parents
        input_tokens += propose_in + dedupe_in + assign_in + rename_in
        output_tokens += (neighbourhoods + 1) * plan.hierarchy_output_tokens + children * 20 + parents * plan.naming_output_tokens
    return calls, input_tokens, output_tokens


def estimate(conversations: Iterable[Conversation], settings: LLMSettings, plan: CallPlan | None = None) -> dict[str, Any]:
    plan = plan or CallPlan()
    counter_name, count = token_counter()
    prices = PriceTable(settings.prices)
    n = conversation_tokens = 0
    for conversation in conversations:
        n += 1
        text = "\n".join(f"{m.role}: {m.content}" for m in conversation.messages)
        conversation_tokens += min(count(text), plan.max_conversation_tokens)

    stages: dict[str, dict[str, Any]] = {}
    if plan.screen:
        stages["screen"] = _stage(
            n, n * plan.facet_overhead_tokens + conversation_tokens, n * plan.screen_output_tokens, settings.spec_for("screener"), prices
        )
    k = plan.facet_calls_per_conversation
    stages["facets"] = _stage(
        n * k, k * (n * plan.facet_overhead_tokens + conversation_tokens), n * k * plan.facet_output_tokens, settings.spec_for("facets"), prices
    )
    base = _base_clusters(n, plan)
    naming_in = base * (plan.naming_overhead_tokens + plan.naming_summaries * plan.summary_tokens)
    stages["naming"] = _stage(base, naming_in, base * plan.naming_output_tokens, settings.spec_for("naming"), prices)
    sizes = _level_sizes(base, plan)
    h_calls, h_in, h_out = _hierarchy_calls(sizes, plan)
    stages["hierarchy"] = _stage(h_calls, h_in, h_out, settings.spec_for("naming"), prices)
    clusters = sum(sizes)  # every cluster at every level is audited
    stages["audit"] = _stage(
        clusters, clusters * (plan.audit_overhead_tokens + plan.cluster_tokens), clusters * plan.audit_output_tokens, settings.spec_for("auditor"), prices
    )

    calls = sum(s["calls"] for s in stages.values())
    tokens = sum(s["input_tokens"] + s["output_tokens"] for s in stages.values())
    # Stages run one after another; inside a stage, max_concurrency calls overlap, unless a rate limit binds.
    seconds = sum(math.ceil(s["calls"] / settings.max_concurrency) * plan.seconds_per_call for s in stages.values())
    if settings.requests_per_minute:
        seconds = max(seconds, calls / settings.requests_per_minute * 60)
    if settings.tokens_per_minute:
        seconds = max(seconds, tokens / settings.tokens_per_minute * 60)
    notes = [f"unknown price for {s['backend']}: counted as $0" for s in stages.values() if not s["price_known"]]
    return {
        "conversations": n,
        "token_counter": counter_name,
        "stages": stages,
        "total": {
            "calls": calls,
            "input_tokens": sum(s["input_tokens"] for s in stages.values()),
            "output_tokens": sum(s["output_tokens"] for s in stages.values()),
            "cost_usd": round(sum(s["cost_usd"] for s in stages.values()), 4),
        },
        "time_s": round(seconds, 1),
        "assumptions": plan.model_dump(),
        "notes": notes,
    }
