"""Stage 7: the privacy gates. Decide which clusters are published.

A cluster is published only if it has at least `min_accounts` distinct accounts and
`min_conversations` conversations, all its ancestors are published, and, in LLM mode, the privacy
auditor rates its "name: description" at least `min_audit_score` on the paper's 1-5 scale (the
rating and justification are stored). Withheld conversations are counted in an "Other (withheld)"
bucket under the nearest published ancestor (or at the top), so totals add up without revealing
what was withheld.
"""

from __future__ import annotations

import time

import pyarrow as pa

from convoscope import prompts
from convoscope.context import RunContext
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.store import fingerprint

STAGE = "privacy"
AUDIT_SCHEMA = {"type": "object", "properties": {"justification": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 5}},
                "required": ["justification", "score"], "additionalProperties": False}


def audit_request(name: str, description: str) -> LLMRequest:
    return LLMRequest(messages=(ChatMessage("user", prompts.render("audit", cluster=f"{name}: {description}")),), temperature=0.0,
                      max_tokens=300, json_schema=AUDIT_SCHEMA, role="auditor", task="audit")


def run_privacy(ctx: RunContext, upstream: str) -> str:
    config = ctx.config
    p = config.privacy
    fp = fingerprint(STAGE, upstream, p.min_accounts, p.min_conversations, p.min_audit_score,
                     (config.llm.auditor or config.llm.naming or config.llm.facets, prompts.load("audit").template) if config.llm_mode else None)
    if ctx.store.stage_complete(STAGE, fp):
        return fp
    started = time.perf_counter()
    rows = ctx.store.read_table("hierarchy").to_pylist()
    by_id = {r["id"]: r for r in rows}
    audit_scores: dict[str, int | None] = {r["id"]: None for r in rows}
    audit_reasons: dict[str, str | None] = {r["id"]: None for r in rows}
    candidates = [r for r in rows if r["accounts"] >= p.min_accounts and r["size"] >= p.min_conversations]
    if config.llm_mode and candidates:
        answers = ctx.complete_many([audit_request(r["name"], r["description"]) for r in candidates], description="Privacy audit")
        for r, resp in zip(candidates, answers):
            if not resp.failed and isinstance(resp.parsed, dict):
                audit_scores[r["id"]] = int(resp.parsed["score"])
                audit_reasons[r["id"]] = " ".join(str(resp.parsed["justification"]).split())
            else:
                audit_reasons[r["id"]] = "the auditor failed on this cluster, so it is withheld"

    def own_reason(r: dict) -> str | None:
        if r["accounts"] < p.min_accounts:
            return f"fewer than {p.min_accounts} accounts"
        if r["size"] < p.min_conversations:
            return f"fewer than {p.min_conversations} conversations"
        if config.llm_mode:
            score = audit_scores[r["id"]]
            if score is None:
                return "not audited (auditor failed)"
            if score < p.min_audit_score:
                return f"privacy audit score {score} < {p.min_audit_score}"
        return None

    reasons: dict[str, str | None] = {}
    for r in sorted(rows, key=lambda r: r["level"]):  # parents first
        parent_reason = reasons.get(r["parent"]) if r["parent"] else None
        reasons[r["id"]] = "an ancestor is withheld" if parent_reason else own_reason(r)

    published = {cid: reasons[cid] is None for cid in by_id}
    # "Other (withheld)" buckets: conversations of a published parent not covered by published children
    others = []
    levels = max(r["level"] for r in rows) + 1
    for r in rows:
        if not published[r["id"]] or r["level"] == levels - 1:
            continue
        kids = [k for k in rows if k["parent"] == r["id"]]
        hidden = r["size"] - sum(k["size"] for k in kids if published[k["id"]])
        if hidden > 0:
            others.append({"id": f"{r['id']}/other", "level": r["level"] + 1, "parent": r["id"], "size": hidden})
    top_hidden = sum(r["size"] for r in rows if r["level"] == 0 and not published[r["id"]])
    if top_hidden > 0:
        others.append({"id": "other", "level": 0, "parent": None, "size": top_hidden})

    out = {k: [] for k in ("id", "level", "parent", "kind", "name", "description", "size", "accounts", "published", "withheld_reason", "audit_score", "audit_reason")}
    for r in rows:
        out["id"].append(r["id"]); out["level"].append(r["level"]); out["parent"].append(r["parent"]); out["kind"].append("cluster")
        out["name"].append(r["name"]); out["description"].append(r["description"]); out["size"].append(r["size"]); out["accounts"].append(r["accounts"])
        out["published"].append(published[r["id"]]); out["withheld_reason"].append(reasons[r["id"]])
        out["audit_score"].append(audit_scores[r["id"]]); out["audit_reason"].append(audit_reasons[r["id"]])
    for o in others:
        out["id"].append(o["id"]); out["level"].append(o["level"]); out["parent"].append(o["parent"]); out["kind"].append("other")
        out["name"].append("Other (withheld)"); out["description"].append("Conversations in clusters too small or too specific to show.")
        out["size"].append(o["size"]); out["accounts"].append(None); out["published"].append(True); out["withheld_reason"].append(None)
        out["audit_score"].append(None); out["audit_reason"].append(None)
    table = pa.table({**out, "level": pa.array(out["level"], type=pa.int32()), "size": pa.array(out["size"], type=pa.int64()),
                      "accounts": pa.array(out["accounts"], type=pa.int64()), "audit_score": pa.array(out["audit_score"], type=pa.int8())})
    n_withheld = sum(1 for v in published.values() if not v)
    artifact = ctx.store.write_table("clusters", table)
    ctx.store.mark_complete(STAGE, fp, [artifact], seconds=time.perf_counter() - started, withheld_clusters=n_withheld,
                            published_clusters=len(rows) - n_withheld, audited=len(candidates) if config.llm_mode else 0)
    return fp
