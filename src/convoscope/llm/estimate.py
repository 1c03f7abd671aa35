"""What a run will cost before it runs: token counts, calls per stage, dollars and time. No network.

The call model (`CallPlan`) follows the pipeline: request sizes are measured on the stages' own
prompts (their system prompts and user templates, with the JSON schema the provider bills), the
hierarchy's calls follow its algorithm level by level (hierarchy_levels), and audits and the
children shown to the hierarchy count only clusters that pass the privacy stage's size gates
(convoscope.policy), simulated on the input's accounts split into clusters of equal size. It is a
planning aid: cluster sizes, answer lengths and how many parents a model proposes vary, so expect
about ten percent on calls and tokens, more on a single stage. Tokens are counted with tiktoken's
cl100k_base when tiktoken is installed, else as characters / 4 (the result says which).

Costs are given live, live with prompt caching (the static system prompt of each task read from the
provider's cache after the first call, where it reaches the model's minimum cacheable length),
batch (screen, facets and audit through the batch interfaces at half price) and batch with caching.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, Callable, Iterable

import numpy as np
from pydantic import BaseModel, Field

from convoscope.llm.base import LLMRequest, Usage
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


MESSAGE_FRAMING_TOKENS = 8  # role and separators around each message, system prompt included
BATCH_STAGES = ("screen", "facets", "audit")  # what --batch sends through the batch interfaces


class CallPlan(BaseModel):
    """The pipeline's LLM calls, as a model for estimates. Prompt sizes are measured on the stages'
    prompts; the fields here are what only a run knows (answer lengths, cluster sizes)."""

    max_conversation_tokens: int = Field(6000, description="Conversations are truncated to this many tokens in the facet prompt.")
    facet_output_tokens: int = Field(60, description="Answer tokens per conversation and facet call (verb-phrase summaries, language, score as JSON).")
    facet_calls_per_conversation: int = Field(1, description="1 when all facets share one call; the number of facets otherwise.")
    conversations_per_call: int = Field(1, description="facets.conversations_per_call: conversations of one account bucket per facets call (1 in DP mode and with per-facet calls).")
    custom_facets: list[dict[str, Any]] = Field(default_factory=list, description="facets.custom: each adds a line to the facet prompt.")
    screen: bool = Field(False, description="A screener question is asked of every conversation first.")
    screen_question: str = Field("Is this conversation about the topic of interest?", description="The screener question (part of its prompt).")
    screen_output_tokens: int = Field(8, description="A yes/no JSON answer.")
    conversations_per_cluster: int = Field(100, description="Average base cluster size: base clusters = conversations / this.")
    naming_sample: int = Field(50, description="Member summaries, and nearby summaries, shown to the namer per base cluster (naming.SAMPLE).")
    summary_tokens: int = Field(35, description="Tokens per request summary, its opening included.")
    naming_output_tokens: int = Field(60, description="A name and a two-sentence description as JSON.")
    levels: int | None = Field(None, description="hierarchy.levels: levels including the base (None: the pipeline's default).")
    top_clusters: int | None = Field(None, description="hierarchy.top_clusters: wanted top-level clusters (None: the pipeline's default).")
    neighbourhood_size: int = Field(40, description="Clusters per neighbourhood in the propose step.")
    outside_neighbours: int = Field(5, description="Clusters from outside a neighbourhood shown with it (hierarchy.OUTSIDE_NEIGHBOURS).")
    cluster_tokens: int = Field(50, description="Tokens of one cluster's name and description in hierarchy and audit prompts.")
    parent_name_tokens: int = Field(10, description="Tokens of one parent name (propose, dedupe and assign prompts and answers).")
    assign_output_tokens: int = Field(40, description="A short scratchpad and the chosen parent as JSON.")
    audit_output_tokens: int = Field(35, description="A one-sentence justification and a score as JSON.")
    schema_billed: bool = Field(True, description="The provider bills the JSON schema as input (OpenAI structured outputs, Anthropic tools); the test fakes do not.")
    privacy: dict[str, Any] = Field(default_factory=dict, description="privacy settings (PrivacySettings fields) for the size gates; empty: defaults.")
    seconds_per_call: float = Field(3.0, description="Typical latency of one call, for the time estimate.")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> "CallPlan":
        """The plan of a run with this convoscope Config (facets, screener, clustering, hierarchy, privacy)."""
        facets = config.facets
        values: dict[str, Any] = {
            "max_conversation_tokens": facets.max_conversation_tokens,
            "facet_calls_per_conversation": (4 + len(facets.custom)) if facets.per_facet_calls else 1,
            "conversations_per_call": 1 if facets.per_facet_calls or config.privacy.mode == "dp" else facets.conversations_per_call,
            "custom_facets": [f.model_dump() for f in facets.custom],
            "screen": bool(facets.screener), "conversations_per_cluster": config.cluster.conversations_per_cluster,
            "levels": config.hierarchy.levels, "top_clusters": config.hierarchy.top_clusters,
            "neighbourhood_size": config.hierarchy.neighbourhood_size, "privacy": config.privacy.model_dump(),
        }
        if facets.screener:
            values["screen_question"] = facets.screener
        return cls(**{**values, **overrides})


def _cost(spec: str, prices: PriceTable, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, batch: bool) -> float:
    model = _priced_model(spec)
    return prices.cost_of(model, Usage(input_tokens, output_tokens, cache_read, cache_write), batch=batch)


def _priced_model(spec: str) -> str | None:
    parsed = parse_spec(spec)
    return None if parsed is None or parsed.kind in ("llamacpp", "vllm") else parsed.model


def _cache_minimum(spec: str) -> int | None:
    """The shortest prefix the provider caches (None: no prompt cache, e.g. a local backend)."""
    parsed = parse_spec(spec)
    if parsed is None or parsed.kind in ("llamacpp", "vllm"):
        return None
    if parsed.kind == "anthropic":
        try:
            from convoscope.llm.backends.anthropic import cache_min_tokens
        except ImportError:  # an older backend without prompt caching
            return None
        return cache_min_tokens(parsed.model)
    return 1024  # OpenAI's automatic prefix caching


def _stage(name: str, calls: int, input_tokens: int, output_tokens: int, system_tokens: int, tasks: int, spec: str, prices: PriceTable) -> dict[str, Any]:
    """One stage's calls, tokens and costs. `system_tokens` per call is the static prefix (one per task:
    `tasks` prefixes are written to the cache once each, every other call reads its prefix)."""
    model = _priced_model(spec)
    minimum = _cache_minimum(spec)
    cacheable = minimum is not None and system_tokens >= minimum and calls > tasks
    cache_write = tasks * system_tokens if cacheable else 0
    cache_read = (calls - tasks) * system_tokens if cacheable else 0
    batch = name in BATCH_STAGES
    return {
        "backend": spec,
        "calls": calls,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "static_prefix_tokens_per_call": system_tokens,
        "cacheable": cacheable,
        "cost_usd": round(prices.cost(model, input_tokens, output_tokens), 4),
        "cost_usd_cached": round(_cost(spec, prices, input_tokens, output_tokens, cache_read, cache_write, False), 4),
        "cost_usd_batch": round(prices.cost(model, input_tokens, output_tokens, batch=batch), 4),
        "cost_usd_batch_cached": round(_cost(spec, prices, input_tokens, output_tokens, cache_read, cache_write, batch), 4),
        "price_known": prices.lookup(model) is not None,
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


def passing_clusters(account_index: np.ndarray, k: int, privacy: Any, *, share_cap: bool, seed: int = 0) -> int:
    """How many of k clusters pass the privacy stage's size gates (policy.group_gate_reason) when the
    conversations, with their accounts, are split at random into k clusters of equal size."""
    from convoscope import policy

    if k == 0 or len(account_index) == 0:
        return 0
    shuffled = np.random.default_rng(seed).permutation(account_index)
    return sum(policy.group_gate_reason(part, privacy, share_cap=share_cap) is None for part in np.array_split(shuffled, k))


def _facet_groups(accounts: list[str], budget_tokens: list[int], plan: CallPlan) -> list[list[int]]:
    """The facets stage's shared calls, simulated: accounts in buckets of about `conversations_per_call`
    (by a plain hash here: the stage's keyed hash splits them alike), groups by the stage's own rule
    (conversation_format.call_groups). The stage's holding buffer (GROUP_BUFFER_CHARS) is not simulated:
    above about 100,000 conversations the stage may make a few more calls than this."""
    import hashlib

    from convoscope.conversation_format import call_groups

    n_buckets = max(1, round(len(set(accounts)) / plan.conversations_per_call))
    buckets = [int.from_bytes(hashlib.blake2b(a.encode(), digest_size=8).digest(), "big") % n_buckets for a in accounts]
    return call_groups(buckets, budget_tokens, plan.conversations_per_call, plan.max_conversation_tokens)


class _Prompts:
    """Token sizes of the stages' real requests: fixed part (system prompt, tags, framing, schema) and
    the per-item part, measured by building requests with empty and one-item contents."""

    def __init__(self, count: Callable[[str], int], plan: CallPlan):
        self.count = count
        self.plan = plan

    def tokens(self, request: LLMRequest) -> int:
        total = sum(self.count(m.content) for m in request.messages) + MESSAGE_FRAMING_TOKENS * len(request.messages)
        if request.system:
            total += self.count(request.system) + MESSAGE_FRAMING_TOKENS
        if self.plan.schema_billed and request.json_schema is not None:
            total += self.count(json.dumps(request.json_schema))
        return total

    def system(self, request: LLMRequest) -> int:
        return self.count(request.system) + MESSAGE_FRAMING_TOKENS if request.system else 0


def _requests(plan: CallPlan) -> dict[str, Any]:
    """One empty request per task, built by the stages' own request builders."""
    from convoscope import prompts
    from convoscope.config import load_config
    from convoscope.stages import hierarchy, naming, privacy, screen
    from convoscope.stages.facets import _facet_request, _group_request, facet_questions

    config = load_config(None, {"llm.facets": "openai:estimate@http://127.0.0.1:9", "facets.custom": plan.custom_facets})
    questions = facet_questions(config)
    return {
        "facets": _facet_request("", questions) if plan.facet_calls_per_conversation == 1 else _facet_request("", questions, only="request"),
        "facets_group": {m: _group_request([""] * m, questions) for m in range(2, plan.conversations_per_call + 1)},
        "screen": LLMRequest(messages=(), system=prompts.system_prompt("screen", question=plan.screen_question), json_schema=screen.SCREEN_SCHEMA),
        "screen_user": prompts.user_prompt("screen", conversation=""),
        "name": naming._name_request([], [], "request"),
        "propose": hierarchy._names_request("propose_parents", clusters="", desired=10, low=5, high=15),
        "dedupe": hierarchy._names_request("dedupe_parents", candidates="", desired=10, low=5, high=15),
        "assign": hierarchy._naming_request("assign_parent", temperature=0.2, max_tokens=300, schema=hierarchy.ASSIGN_SCHEMA, task="assign",
                                            child="", parents=""),
        "rename": hierarchy._naming_request("rename_parent", temperature=1.0, max_tokens=200, schema=hierarchy.NAME_SCHEMA, task="rename", children=""),
        "audit": privacy.audit_request("", ""),
    }


def estimate(conversations: Iterable[Conversation], settings: LLMSettings, plan: CallPlan | None = None) -> dict[str, Any]:
    from convoscope.config import PrivacySettings
    from convoscope.conversation_format import approx_tokens, format_conversation

    plan = plan or CallPlan()
    counter_name, count = token_counter()
    prices = PriceTable(settings.prices)
    privacy = PrivacySettings(**plan.privacy)
    n = conversation_tokens = 0
    accounts: list[str] = []
    per_conversation: list[int] = []  # tokens of each conversation in the facet prompt
    budget_tokens: list[int] = []  # the same in the stage's budget unit (characters / 4), for forming shared calls
    for conversation in conversations:
        n += 1
        # the text the facet prompt holds (scrubbing changes its length little and is left out for speed)
        text = format_conversation(conversation, plan.max_conversation_tokens, scrub_text=False)
        per_conversation.append(count(text))
        budget_tokens.append(approx_tokens(text))
        conversation_tokens += per_conversation[-1]
        accounts.append(conversation.account_id if conversation.account_id is not None else f"conversation:{conversation.id}")
    account_index = np.unique(np.asarray(accounts, dtype=object), return_inverse=True)[1].reshape(-1) if n else np.zeros(0, dtype=np.int64)

    p = _Prompts(count, plan)
    req = _requests(plan)
    stages: dict[str, dict[str, Any]] = {}
    if plan.screen:
        fixed = p.tokens(req["screen"]) + count(req["screen_user"]) + MESSAGE_FRAMING_TOKENS
        stages["screen"] = _stage("screen", n, n * fixed + conversation_tokens, n * plan.screen_output_tokens, p.system(req["screen"]), 1,
                                  settings.spec_for("screener"), prices)
    k = plan.facet_calls_per_conversation
    facet_fixed = p.tokens(req["facets"])
    if k == 1 and plan.conversations_per_call > 1 and n:
        groups = _facet_groups(accounts, budget_tokens, plan)
        fixed_of = {1: facet_fixed, **{m: p.tokens(r) for m, r in req["facets_group"].items()}}
        shared = [g for g in groups if len(g) > 1]
        system = p.system(req["facets_group"][plan.conversations_per_call]) if shared else p.system(req["facets"])
        stages["facets"] = _stage("facets", len(groups), sum(fixed_of[len(g)] for g in groups) + conversation_tokens, n * plan.facet_output_tokens,
                                  system, 2 if len(shared) < len(groups) else 1, settings.spec_for("facets"), prices)
        stages["facets"]["shared_calls"] = len(shared)
    else:
        stages["facets"] = _stage("facets", n * k, k * (n * facet_fixed + conversation_tokens), n * k * plan.facet_output_tokens,
                                  p.system(req["facets"]), 1, settings.spec_for("facets"), prices)

    base = _base_clusters(n, plan)
    item = plan.summary_tokens + 1  # "- " and a line break around each summary
    shown = min(plan.naming_sample, max(1, plan.conversations_per_cluster)) + (plan.naming_sample if base > 1 else 0)
    stages["naming"] = _stage("name", base, base * (p.tokens(req["name"]) + shown * item), base * plan.naming_output_tokens,
                              p.system(req["name"]), 1, settings.spec_for("naming"), prices)

    sizes = _level_sizes(base, plan)
    h_calls = h_in = h_out = 0
    h_tasks = set()
    cluster_item = plan.cluster_tokens + 1
    name_item = plan.parent_name_tokens + 1
    for height, (children, parents) in enumerate(zip(sizes, sizes[1:])):
        # children the model may see: those passing the size gates (the share cap applies to base clusters only)
        publishable = passing_clusters(account_index, children, privacy, share_cap=height == 0)
        hoods = max(1, round(children / plan.neighbourhood_size))
        propose_in = hoods * p.tokens(req["propose"]) + (publishable + hoods * plan.outside_neighbours) * cluster_item
        calls, tokens_in, tokens_out = hoods, propose_in, parents * name_item  # every neighbourhood proposes its share of the parents
        h_tasks.add("propose")
        if hoods > 1:  # candidates from several neighbourhoods overlap: one dedupe call
            calls += 1
            tokens_in += p.tokens(req["dedupe"]) + parents * name_item
            tokens_out += parents * name_item
            h_tasks.add("dedupe")
        calls += publishable + parents
        tokens_in += publishable * (p.tokens(req["assign"]) + cluster_item + parents * name_item)
        tokens_out += publishable * plan.assign_output_tokens
        tokens_in += parents * p.tokens(req["rename"]) + publishable * cluster_item  # each child is shown to one parent
        tokens_out += parents * plan.naming_output_tokens
        h_tasks.update(("assign", "rename"))
        h_calls, h_in, h_out = h_calls + calls, h_in + tokens_in, h_out + tokens_out
    hierarchy_system = max((p.system(req[t]) for t in ("propose", "dedupe", "assign", "rename")), default=0)
    stages["hierarchy"] = _stage("hierarchy", h_calls, h_in, h_out, hierarchy_system if h_calls else 0, max(1, len(h_tasks)),
                                 settings.spec_for("naming"), prices)
    # audits: the clusters of every level whose counts pass the gates (the privacy stage audits no other)
    audited = sum(passing_clusters(account_index, size, privacy, share_cap=height == 0) for height, size in enumerate(sizes))
    stages["audit"] = _stage("audit", audited, audited * (p.tokens(req["audit"]) + plan.cluster_tokens), audited * plan.audit_output_tokens,
                             p.system(req["audit"]), 1, settings.spec_for("auditor"), prices)

    calls = sum(s["calls"] for s in stages.values())
    tokens = sum(s["input_tokens"] + s["output_tokens"] for s in stages.values())
    # Stages run one after another; inside a stage, max_concurrency calls overlap, unless a rate limit binds.
    seconds = sum(math.ceil(s["calls"] / settings.max_concurrency) * plan.seconds_per_call for s in stages.values())
    if settings.requests_per_minute:
        seconds = max(seconds, calls / settings.requests_per_minute * 60)
    if settings.tokens_per_minute:
        seconds = max(seconds, tokens / settings.tokens_per_minute * 60)
    notes = [f"unknown price for {s['backend']}: counted as $0" for s in stages.values() if not s["price_known"]]
    if not any(s["cacheable"] for s in stages.values()) and any(_cache_minimum(s["backend"]) for s in stages.values()):
        notes.append("no static prompt reaches the provider's minimum cacheable length, so prompt caching saves nothing here")
    return {
        "conversations": n,
        "token_counter": counter_name,
        "stages": stages,
        "total": {
            "calls": calls,
            "input_tokens": sum(s["input_tokens"] for s in stages.values()),
            "output_tokens": sum(s["output_tokens"] for s in stages.values()),
            **{key: round(sum(s[key] for s in stages.values()), 4) for key in ("cost_usd", "cost_usd_cached", "cost_usd_batch", "cost_usd_batch_cached")},
        },
        "time_s": round(seconds, 1),
        "assumptions": plan.model_dump(),
        "notes": notes,
    }
