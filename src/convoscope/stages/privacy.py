"""Stage 7: the privacy gates. Decide which clusters are published, and under which name.

A cluster is published only when (convoscope.policy has the rules):
- it has at least `min_accounts` distinct accounts, at least `min_conversations` conversations when
  each account counts at most `max_conversations_per_account`, and (for base clusters, whose text is
  written from their own summaries) no account supplies more than `max_account_share` of it;
- in LLM mode, its name and description pass two deterministic checks, whatever the auditor says:
  every capitalised word and number is used in the facet summaries of at least `min_accounts`
  accounts of the cluster (or is common across the run), and nothing looks like a person's name
  unless `public_figure_accounts` accounts used it. A text that fails is rewritten once with the
  offending words named, then checked again; then the privacy auditor rates it (the paper's 1-5
  scale; below `min_audit_score` fails). The auditor's justification stays in the run directory;
- its parent is shown. A parent whose counts pass but whose *text* fails is shown as a neutral
  "Name withheld" node, so its passing children stay visible.

Secondary suppression: under every shown node (and at the top), the conversations of the children that
are not shown form one "Other (withheld)" remainder, published with its counts. When that remainder
would itself fail the count gates (so subtraction would reveal a small withheld cluster), the smallest
shown children are withheld too until it passes or nothing is left to hide it in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from convoscope import policy, prompts
from convoscope.analysis_text import SharedCallChecker, published_text_checker
from convoscope.context import RunContext
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.prompts import NAME_SCHEMA
from convoscope.text import clean_description, clean_name
from convoscope.stages.rows import analysed_rows
from convoscope.stage_runner import Stage, StageOutput, StageRecord, optional_field, run_stage

AUDIT_SCHEMA = {"type": "object", "properties": {"justification": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 5}},
                "required": ["justification", "score"], "additionalProperties": False}
OTHER_NAME = "Other (withheld)"
OTHER_DESCRIPTION = "Conversations in clusters too small or too specific to show."


def audit_request(name: str, description: str) -> LLMRequest:
    return LLMRequest(messages=(ChatMessage("user", prompts.user_prompt("audit", cluster=f"{name}: {description}")),), system=prompts.system_prompt("audit"),
                      temperature=0.0, max_tokens=150, json_schema=AUDIT_SCHEMA, role="auditor", task="audit")


def rewrite_request(name: str, description: str, words: list[str]) -> LLMRequest:
    return LLMRequest(messages=(ChatMessage("user", prompts.user_prompt("rewrite_name", cluster=f"{name}: {description}", words=", ".join(words))),),
                      system=prompts.system_prompt("rewrite_name", shared="naming_system"), temperature=0.0, max_tokens=200, json_schema=NAME_SCHEMA,
                      role="naming", task="rewrite", answer_check=prompts.name_answer_problem)


def check_texts(ctx: RunContext, checker: policy.TextChecker | SharedCallChecker, items: list[tuple[str, str, np.ndarray]], description: str) -> list[tuple[str, str, list[str]]]:
    """(name, description, remaining problems) for each (name, description, members): texts that fail
    are rewritten once by the naming model with the offending words named, then checked again."""
    out = []
    retry = []
    checker.prepare([f"{name}\n{desc}" for name, desc, _ in items])  # one pass over the run's texts, not one per word
    for i, (name, desc, members) in enumerate(items):
        bad = checker.problems(f"{name}\n{desc}", members)
        out.append((name, desc, bad))
        if bad:
            retry.append(i)
    if retry and ctx.llm is not None:
        answers = ctx.complete_many([rewrite_request(items[i][0], items[i][1], out[i][2]) for i in retry], description=description)
        for i, resp in zip(retry, answers):
            if resp.failed or not isinstance(resp.parsed, dict):
                continue
            name, desc = clean_name(resp.parsed["name"]), clean_description(resp.parsed["description"])
            out[i] = (name, desc, checker.problems(f"{name}\n{desc}", items[i][2]))
    return out


def _suppress_small_remainders(parent_rows: list[int], child_of_parent: dict[int, list[int]], shown: dict[int, bool],
                               members_of: dict[int, np.ndarray], account_index: np.ndarray, p) -> list[int]:
    """Withhold the smallest shown children of each parent until its withheld remainder passes the
    count gates (or is empty). Returns the rows withheld this way."""
    extra = []
    for parent in parent_rows:
        kids = child_of_parent.get(parent, [])
        while True:
            hidden = [k for k in kids if not shown[k]]
            visible = sorted((k for k in kids if shown[k]), key=lambda k: (len(members_of[k]), k))
            if not hidden or not visible:
                break
            rest = np.concatenate([members_of[k] for k in hidden])
            # a remainder has no text, only counts and thresholded cells: no share cap (it protects names)
            if policy.group_gate_reason(account_index[rest], p, share_cap=False) is None:
                break
            shown[visible[0]] = False
            extra.append(visible[0])
    return extra


@dataclass(frozen=True)
class PrivacyRecord(StageRecord):
    withheld_clusters: int
    published_clusters: int
    neutral_names: int  # published as "Name withheld"
    suppressed_for_remainders: int  # shown clusters withheld so that an "other" remainder passes the gates
    rewritten_names: int
    audited: int
    dp: dict | None = optional_field()  # DP mode: the privacy stage's releases (convoscope.dp_release) and what they cost


def _privacy_settings(p) -> dict:
    """The privacy settings a stage depends on; the DP ones only in DP mode, so threshold runs keep their fingerprints."""
    exclude = {"include_raw_text", "scrub_identifiers"} | ({"mode", "epsilon", "delta"} if p.mode != "dp" else set())
    return p.model_dump(exclude=exclude)


def _settings(ctx: RunContext) -> tuple:
    config = ctx.config
    if config.privacy.mode == "dp":
        return (_privacy_settings(config.privacy), "dp-release-v4", len(config.facets.hierarchy_facets), (config.llm.spec_for("auditor"), config.llm.spec_for("naming"),
                prompts.load("audit").template, prompts.load("dp_name_cluster").template) if config.llm_mode else None)
    return (_privacy_settings(config.privacy), "suppression-v2",
            (config.llm.spec_for("auditor"), config.llm.spec_for("naming"), prompts.load("audit").template, prompts.load("rewrite_name").template)
            if config.llm_mode else None)


def _privacy_dp(ctx: RunContext) -> StageOutput[PrivacyRecord]:
    """Differential privacy mode: which clusters exist, their sizes, accounts and names from DP releases only."""
    from convoscope.dp_release import dp_privacy

    table, figures = dp_privacy(ctx)
    artifact = ctx.store.write_table("clusters", table)
    return StageOutput([artifact], PrivacyRecord(withheld_clusters=figures["withheld_clusters"], published_clusters=figures["published_clusters"],
                                                 neutral_names=0, suppressed_for_remainders=0, rewritten_names=0, audited=0, dp=figures))


def _privacy(ctx: RunContext) -> StageOutput[PrivacyRecord]:
    config = ctx.config
    p = config.privacy
    if p.mode == "dp":
        return _privacy_dp(ctx)
    rows = ctx.store.read_table("hierarchy").to_pylist()
    assignments = ctx.store.read_table("assignments")
    conv_rows = analysed_rows(ctx.store)
    _, account_index = np.unique(conv_rows.accounts, return_inverse=True)
    account_index = account_index.reshape(-1)
    n_levels = max(r["level"] for r in rows) + 1
    row_of = {r["id"]: i for i, r in enumerate(rows)}

    # conversations of every cluster, and its counts under contribution bounding
    members_of: dict[int, np.ndarray] = {}
    for level in range(n_levels):
        ids = np.asarray(assignments.column(f"level_{level}").to_pylist(), dtype=object)
        uniq, labels = np.unique(ids, return_inverse=True)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(uniq) + 1))
        for g, cid in enumerate(uniq):
            members_of[row_of[cid]] = order[bounds[g]:bounds[g + 1]]
    # the share cap protects text written from a cluster's own summaries (a leaf's); a parent is named
    # from its publishable children only, and capping it would hide good children beside a dominated one
    count_reason = {i: policy.group_gate_reason(account_index[members_of.get(i, np.zeros(0, dtype=np.int64))], p,
                                                share_cap=rows[i]["level"] == n_levels - 1) for i in range(len(rows))}

    names = [(r["name"], r["description"]) for r in rows]
    text_reason: dict[int, str | None] = {i: None for i in range(len(rows))}
    audit_scores: dict[int, int | None] = {i: None for i in range(len(rows))}
    audit_reasons: dict[int, str | None] = {i: None for i in range(len(rows))}
    # optional hierarchy column `name_source` (convoscope assign): "model" (default) is checked below;
    # "inherited" passed these checks in the run it came from and is not checked or audited again
    # against this run's summaries; "inherited-withheld" was not published there (a leaf is withheld,
    # an inner node shown as "Name withheld"); "none" is fixed text no model wrote: counts only
    sources = [r.get("name_source") or "model" for r in rows]
    for i, source in enumerate(sources):
        if source == "inherited-withheld":
            text_reason[i] = "its name was not published in the run it was inherited from"
    candidates = [i for i in range(len(rows)) if count_reason[i] is None and sources[i] == "model"]
    if not config.llm_mode:
        # extractive names are k-anonymous terms by construction; an injected namer's base names are not
        custom = (ctx.store.stage_record("name") or {}).get("mode") == "custom"
        candidates = [i for i in candidates if custom and rows[i]["level"] == n_levels - 1]
    rewritten = 0
    if candidates:
        # words count distinct accounts, or distinct call buckets when facet calls were shared (copying
        # inside a call must not make a word look widely used); the size gates above count accounts
        checker = published_text_checker(ctx, account_index)
        checked = check_texts(ctx, checker, [(names[i][0], names[i][1], members_of[i]) for i in candidates], "Rewriting names that fail the checks")
        for i, (name, desc, bad) in zip(candidates, checked):
            rewritten += (name, desc) != names[i]
            names[i] = (name, desc)
            if bad:
                text_reason[i] = f"the name or description uses {len(bad)} word(s) too few accounts used, or a person-like name"
        to_audit = [i for i in candidates if text_reason[i] is None] if config.llm_mode else []
        answers = ctx.complete_many([audit_request(*names[i]) for i in to_audit], description="Privacy audit") if to_audit else []
        for i, resp in zip(to_audit, answers):
            if not resp.failed and isinstance(resp.parsed, dict):
                audit_scores[i] = int(resp.parsed["score"])
                audit_reasons[i] = " ".join(str(resp.parsed["justification"]).split())
                if audit_scores[i] < p.min_audit_score:
                    text_reason[i] = f"privacy audit score {audit_scores[i]} < {p.min_audit_score}"
            else:
                text_reason[i] = "not audited (the auditor failed), so withheld"

    # top-down: a node is shown when its counts pass and its parent is shown; a leaf also needs its
    # text to pass, an inner node whose text fails is shown under a neutral name
    reasons: dict[int, str | None] = {}
    neutral: set[int] = set()
    by_level = sorted(range(len(rows)), key=lambda i: rows[i]["level"])
    for i in by_level:
        parent = rows[i]["parent"]
        if parent is not None and reasons[row_of[parent]] is not None:
            reasons[i] = "an ancestor is withheld"
        elif count_reason[i] is not None:
            reasons[i] = count_reason[i]
        elif text_reason[i] is not None and rows[i]["level"] == n_levels - 1:
            reasons[i] = text_reason[i]
        else:
            reasons[i] = None
            if text_reason[i] is not None:
                neutral.add(i)
    shown = {i: reasons[i] is None for i in range(len(rows))}
    child_of_parent: dict[int, list[int]] = {}
    top_rows = [i for i in range(len(rows)) if rows[i]["parent"] is None]
    child_of_parent[-1] = top_rows
    members_of[-1] = np.arange(len(account_index))
    for i, r in enumerate(rows):
        if r["parent"] is not None:
            child_of_parent.setdefault(row_of[r["parent"]], []).append(i)
    suppressed = 0
    for level in range(-1, n_levels - 1):  # the run itself (-1), then each level's shown nodes, top-down
        parents = [-1] if level == -1 else [i for i in by_level if rows[i]["level"] == level and shown[i]]
        for i in _suppress_small_remainders(parents, child_of_parent, shown, members_of, account_index, p):
            reasons[i] = "withheld so that the withheld remainder beside it is not recoverable by subtraction"
            suppressed += 1
        for i in by_level:  # descendants of newly withheld nodes
            parent = rows[i]["parent"]
            if parent is not None and not shown[row_of[parent]] and shown[i]:
                shown[i] = False
                reasons[i] = "an ancestor is withheld so that a withheld remainder is not recoverable by subtraction"

    others = []
    for parent in [-1] + [i for i in by_level if shown[i] and rows[i]["level"] < n_levels - 1]:
        hidden = [k for k in child_of_parent.get(parent, []) if not shown[k]]
        size = int(sum(len(members_of[k]) for k in hidden))
        if size:
            pid = None if parent == -1 else rows[parent]["id"]
            level = 0 if parent == -1 else rows[parent]["level"] + 1
            accounts = len(np.unique(account_index[np.concatenate([members_of[k] for k in hidden])]))
            others.append({"id": "other" if pid is None else f"{pid}/other", "level": level, "parent": pid, "size": size, "accounts": accounts})

    out = {k: [] for k in ("id", "level", "parent", "kind", "name", "description", "size", "accounts", "published", "withheld_reason",
                           "audit_score", "audit_reason")}
    for i, r in enumerate(rows):
        name, desc = (policy.NAME_WITHHELD, "") if i in neutral else names[i]
        for key, value in (("id", r["id"]), ("level", r["level"]), ("parent", r["parent"]), ("kind", "cluster"), ("name", name),
                           ("description", desc), ("size", r["size"]), ("accounts", r["accounts"]), ("published", shown[i]),
                           ("withheld_reason", reasons[i]), ("audit_score", audit_scores[i]), ("audit_reason", audit_reasons[i])):
            out[key].append(value)
    for o in others:
        for key, value in (("id", o["id"]), ("level", o["level"]), ("parent", o["parent"]), ("kind", "other"), ("name", OTHER_NAME),
                           ("description", OTHER_DESCRIPTION), ("size", o["size"]), ("accounts", o["accounts"]), ("published", True),
                           ("withheld_reason", None), ("audit_score", None), ("audit_reason", None)):
            out[key].append(value)
    table = pa.table({**out, "level": pa.array(out["level"], type=pa.int32()), "size": pa.array(out["size"], type=pa.int64()),
                      "accounts": pa.array(out["accounts"], type=pa.int64()), "audit_score": pa.array(out["audit_score"], type=pa.int8())})
    n_withheld = sum(1 for v in shown.values() if not v)
    artifact = ctx.store.write_table("clusters", table)
    return StageOutput([artifact], PrivacyRecord(withheld_clusters=n_withheld, published_clusters=len(rows) - n_withheld, neutral_names=len(neutral),
                                                 suppressed_for_remainders=suppressed, rewritten_names=rewritten,
                                                 audited=sum(1 for v in audit_scores.values() if v is not None)))


PRIVACY = Stage("privacy", _settings, _privacy)


def run_privacy(ctx: RunContext, upstream: str) -> str:
    return run_stage(PRIVACY, ctx, upstream)
