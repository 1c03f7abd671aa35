"""Optional stage: the screener. One yes/no question to the LLM selects the conversations to analyse."""

from __future__ import annotations

import time

import pyarrow as pa

from convoscope import prompts
from convoscope.context import RunContext
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.conversation_format import LLM_BATCH, batches, format_conversation
from convoscope.store import fingerprint

STAGE = "screen"
SCREEN_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}, "required": ["answer"], "additionalProperties": False}


def run_screen(ctx: RunContext, upstream: str) -> tuple[str, set[str] | None]:
    config = ctx.config
    question = config.facets.screener
    if not question:
        return upstream, None
    fp = fingerprint(STAGE, upstream, question, config.llm.facets, prompts.load("screen").template)
    if not ctx.store.stage_complete(STAGE, fp):
        started = time.perf_counter()
        ids: list[str] = []
        keep: list[bool] = []
        failed = 0
        for batch in batches(ctx.iter_input(), LLM_BATCH):
            requests = [
                LLMRequest(messages=(ChatMessage("user", prompts.render("screen", question=question,
                           conversation=format_conversation(c, config.facets.max_conversation_tokens, scrub_text=config.privacy.scrub_identifiers))),),
                           temperature=0.0, max_tokens=20, json_schema=SCREEN_SCHEMA, role="screener", task="screen")
                for c in batch
            ]
            for conv, resp in zip(batch, ctx.complete_many(requests, description="Screening")):
                ids.append(conv.id)
                ok = not resp.failed and isinstance(resp.parsed, dict)
                failed += not ok
                keep.append(ok and resp.parsed.get("answer") == "yes")
        artifact = ctx.store.write_table("selection", pa.table({"conv_id": ids, "selected": keep}))
        ctx.store.mark_complete(STAGE, fp, [artifact], seconds=time.perf_counter() - started, question=question,
                                selected=sum(keep), screened=len(ids), failed=failed)
    table = ctx.store.read_table("selection")
    selected = {cid for cid, k in zip(table.column("conv_id").to_pylist(), table.column("selected").to_pylist()) if k}
    if not selected:
        from convoscope.errors import ConvoscopeError

        raise ConvoscopeError(f"the screener selected no conversation for: {question!r}")
    return fp, selected
