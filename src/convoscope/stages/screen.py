"""Optional stage: the screener. One yes/no question to the LLM selects the conversations to analyse."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from convoscope import prompts
from convoscope.context import RunContext
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.conversation_format import LLM_BATCH, batches, format_conversation
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage

SCREEN_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"], "additionalProperties": False}


@dataclass(frozen=True)
class ScreenRecord(StageRecord):
    question: str
    selected: int
    screened: int
    failed: int


def _settings(ctx: RunContext) -> tuple:
    return ctx.config.facets.screener, ctx.config.llm.facets, prompts.load("screen").template


def _screen(ctx: RunContext) -> StageOutput[ScreenRecord]:
    config = ctx.config
    question = config.facets.screener
    ids: list[str] = []
    keep: list[bool] = []
    failed = 0
    system = prompts.system_prompt("screen", question=question)  # the question is the same on every call
    for batch in batches(ctx.iter_input(), LLM_BATCH):
        requests = [
            LLMRequest(messages=(ChatMessage("user", prompts.user_prompt("screen", conversation=format_conversation(
                           c, config.facets.max_conversation_tokens, scrub_text=config.privacy.scrub_identifiers))),),
                       system=system, temperature=0.0, max_tokens=20, json_schema=SCREEN_SCHEMA, role="screener", task="screen")
            for c in batch
        ]
        for conv, resp in zip(batch, ctx.complete_many(requests, description="Screening")):
            ids.append(conv.id)
            ok = not resp.failed and isinstance(resp.parsed, dict)
            failed += not ok
            keep.append(ok and resp.parsed.get("answer") == "yes")
    artifact = ctx.store.write_table("selection", pa.table({"conv_id": ids, "selected": keep}))
    return StageOutput([artifact], ScreenRecord(question=question, selected=sum(keep), screened=len(ids), failed=failed))


# optional: without a screener question the stage passes its upstream fingerprint through
SCREEN = Stage("screen", _settings, _screen, enabled=lambda ctx: bool(ctx.config.facets.screener))


def selected_conversations(ctx: RunContext) -> set[str] | None:
    """The ids the screener selected (None: no screener, every conversation is analysed); the facets stage's input."""
    question = ctx.config.facets.screener
    if not question:
        return None
    table = ctx.store.read_table("selection")
    selected = {cid for cid, k in zip(table.column("conv_id").to_pylist(), table.column("selected").to_pylist()) if k}
    if not selected:
        from convoscope.errors import ConvoscopeError

        raise ConvoscopeError(f"the screener selected no conversation for: {question!r}")
    return selected


def run_screen(ctx: RunContext, upstream: str) -> tuple[str, set[str] | None]:
    fp = run_stage(SCREEN, ctx, upstream)
    return fp, selected_conversations(ctx)
