"""Stage 2: facets. One row per analysed conversation.

LLM mode: the Clio facets (Request, Task, Language, Concerning, and the user's custom facets) come
from one call per conversation by default (the paper pays once per facet; we pay once), or one call
per facet with `facets.per_facet_calls`. Extractive mode: only computed facets (language by fastText's identifier, see languages.py);
the LLM facets are recorded as unavailable, never faked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from convoscope import prompts
from convoscope.config import Config, CustomFacet
from convoscope.context import RunContext
from convoscope.languages import RULE_VERSION as LANGUAGE_RULE_VERSION, detect_languages
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.model import Conversation
from convoscope.conversation_format import LLM_BATCH, TRUNCATION_RULE, batches, format_conversation
from convoscope.scrub import SCRUB_VERSION
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage
from convoscope.wording import count

REQUEST_OPENING = "The user's overall request for the assistant is to"
TASK_OPENING = "The task is to"

SUMMARY_OPENINGS = {"request": REQUEST_OPENING, "task": TASK_OPENING}
# The built-in facets (request, task, language, concerning) are described in prompts/facets_system.txt,
# the static system prompt; custom facets are appended to it (one line each, the same on every call).
# The model writes request and task as verb phrases and the stage adds the paper's openings, which
# saves output tokens and keeps small models from echoing the openings ("The task is to the assistant
# is asked to ..."). No worked examples: small models (Qwen2.5 1.5B) copy an example summary verbatim.
BUILTIN_SCHEMAS: dict[str, dict[str, Any]] = {
    "request": {"type": "string"},
    "task": {"type": "string"},
    "language": {"type": "string"},
    "concerning": {"type": "integer", "minimum": 1, "maximum": 5},
}


def _custom_schema(facet: CustomFacet) -> dict[str, Any]:
    if facet.type == "category":
        return {"type": "string", "enum": list(facet.choices or [])}
    if facet.type == "number":
        return {"type": "number", "minimum": facet.min, "maximum": facet.max}
    return {"type": "string"}


def _custom_question(facet: CustomFacet) -> str:
    if facet.type == "category":
        return f"{facet.question} Answer with exactly one of: {', '.join(facet.choices or [])}."
    if facet.type == "number":
        return f"{facet.question} Answer with a number from {facet.min:g} to {facet.max:g}."
    return f"{facet.question} At most two sentences, with no detail that could identify anyone."


def facet_questions(config: Config) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """key -> (question, JSON schema of the answer); the question is None for the built-in facets,
    which the system prompt describes."""
    questions: dict[str, tuple[str | None, dict[str, Any]]] = {key: (None, schema) for key, schema in BUILTIN_SCHEMAS.items()}
    for facet in config.facets.custom:
        questions[facet.name] = (_custom_question(facet), _custom_schema(facet))
    return questions


def facets_system_prompt(questions: dict[str, tuple[str | None, dict[str, Any]]]) -> str:
    """The static prompt: the rules and every facet of the run, identical on every call (prompt caching)."""
    custom = "".join(f"\n- {key}: {q}" for key, (q, _) in questions.items() if q is not None)
    return prompts.render("facets_system") + custom


def _facet_request(conversation_text: str, questions: dict[str, tuple[str | None, dict[str, Any]]],
                   only: str | None = None) -> LLMRequest:
    """One call for every facet, or (per_facet_calls) for the facet `only`, with the same system prompt."""
    keys = [only] if only else list(questions)
    schema = {
        "type": "object",
        "properties": {key: questions[key][1] for key in keys},
        "required": keys,
        "additionalProperties": False,
    }
    prompt = prompts.render("facets", conversation=conversation_text) + (f"\n\nAnswer only the key {only}." if only else "")
    openings = {k: o for k, o in SUMMARY_OPENINGS.items() if k in keys}
    return LLMRequest(
        messages=(ChatMessage("user", prompt),),
        system=facets_system_prompt(questions),
        temperature=0.2,
        max_tokens=100 + 60 * len(keys),
        json_schema=schema,
        role="facets",
        task="facets",
        answer_check=(lambda answer: prompts.facet_answer_problem(answer, openings)) if openings else None,
    )


MAX_SUMMARY_WORDS = 60  # the prompt asks for one sentence; a model that rambles is cut here


def _with_opening(text: Any, opening: str) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    words = text.split()
    text = " ".join(words[:MAX_SUMMARY_WORDS]) + ("..." if len(words) > MAX_SUMMARY_WORDS else "")
    if not text.lower().startswith(opening.lower()):
        text = re.sub(r"^to\s+", "", text, flags=re.I)  # the opening ends in "to"
        text = f"{opening} {text[0].lower()}{text[1:]}"
    return text


def _first_language(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return "Unknown"
    return value.split(",")[0].strip().title() or "Unknown"


def _llm_facets(ctx: RunContext, convs: list[Conversation]) -> list[dict[str, Any]]:
    config = ctx.config
    questions = facet_questions(config)
    texts = [format_conversation(c, config.facets.max_conversation_tokens, scrub_text=config.privacy.scrub_identifiers) for c in convs]
    if config.facets.per_facet_calls:
        keys = list(questions)
        requests = [_facet_request(t, questions, only=k) for t in texts for k in keys]
        responses = ctx.complete_many(requests, description="Facets", show_progress=False)  # the stage shows its own bar
        merged: list[dict[str, Any]] = []
        for i in range(len(texts)):
            row: dict[str, Any] = {"failed": False}
            for j, key in enumerate(keys):
                resp = responses[i * len(keys) + j]
                if resp.failed or not isinstance(resp.parsed, dict):
                    row["failed"] = True
                else:
                    row[key] = resp.parsed.get(key)
            merged.append(row)
        return merged
    responses = ctx.complete_many([_facet_request(t, questions) for t in texts], description="Facets", show_progress=False)  # the stage shows its own bar
    out = []
    for resp in responses:
        if resp.failed or not isinstance(resp.parsed, dict):
            out.append({"failed": True})
        else:
            out.append({**resp.parsed, "failed": False})
    return out


@dataclass(frozen=True)
class FacetsRecord(StageRecord):
    mode: str  # "llm" or "extractive"
    failed: int  # conversations whose facet extraction failed (kept with empty facets)
    rows: int
    truncation_rule: str
    max_conversation_tokens: int
    unavailable: dict[str, str]  # facet -> why it is not computed in this mode


def _settings(ctx: RunContext) -> tuple:
    c = ctx.config
    return (c.llm.facets if c.llm_mode else "none", c.facets.model_dump(exclude={"hierarchy_facets"}), c.privacy.scrub_identifiers and SCRUB_VERSION,
            LANGUAGE_RULE_VERSION,
            (prompts.load("facets_system").template, prompts.load("facets").template) if c.llm_mode else None)


def _facets(ctx: RunContext, selected: set[str] | None) -> StageOutput[FacetsRecord]:
    config = ctx.config
    custom_names = [f.name for f in config.facets.custom]
    cols: dict[str, list] = {k: [] for k in ("conv_id", "request", "task", "language", "concerning", "failed")}
    for name in custom_names:
        cols[f"facet.{name}"] = []
    total = ctx.store.stage_record("ingest")["report"]["conversations"]
    convs = (c for c in ctx.iter_input() if selected is None or c.id in selected)
    with ctx.progress() as progress:
        task = progress.add_task("Facets", total=len(selected) if selected is not None else total)
        for batch in batches(convs, LLM_BATCH):
            llm_rows = _llm_facets(ctx, batch) if config.llm_mode else [None] * len(batch)
            languages = detect_languages([c.user_text(" ") for c in batch])
            for conv, row, detected in zip(batch, llm_rows, languages):
                cols["conv_id"].append(conv.id)
                if row is None:
                    cols["request"].append(None)
                    cols["task"].append(None)
                    cols["language"].append(detected)
                    cols["concerning"].append(None)
                    cols["failed"].append(False)
                    for name in custom_names:
                        cols[f"facet.{name}"].append(None)
                    continue
                cols["request"].append(_with_opening(row.get("request"), REQUEST_OPENING))
                cols["task"].append(_with_opening(row.get("task"), TASK_OPENING))
                language = _first_language(row.get("language"))
                cols["language"].append(language if language != "Unknown" else detected)
                concern = row.get("concerning")
                cols["concerning"].append(int(concern) if isinstance(concern, (int, float)) and 1 <= concern <= 5 else None)
                cols["failed"].append(bool(row.get("failed")))
                for name in custom_names:
                    value = row.get(name)
                    cols[f"facet.{name}"].append(None if value is None else str(value))
            progress.advance(task, len(batch))
    table = pa.table(
        {k: pa.array(v, type=pa.int8() if k == "concerning" else (pa.bool_() if k == "failed" else pa.string())) for k, v in cols.items()}
    )
    failed = sum(cols["failed"])
    if failed:
        ctx.console.print(f"[yellow]warning:[/] facet extraction failed for {count(failed, 'conversation')}; they are kept with empty facets and counted in the manifest")
    artifact = ctx.store.write_table("facets", table)
    return StageOutput([artifact], FacetsRecord(
        mode="llm" if config.llm_mode else "extractive", failed=failed, rows=table.num_rows,
        truncation_rule=TRUNCATION_RULE, max_conversation_tokens=config.facets.max_conversation_tokens,
        unavailable={} if config.llm_mode else {"request": "needs an LLM", "task": "needs an LLM", "concerning": "needs an LLM (run with --llm)"},
    ))


# input: the screener's selection (None: every conversation), part of the fingerprint as a sorted id list
FACETS = Stage("facets", _settings, _facets, inputs_key=lambda selected: sorted(selected) if selected is not None else None)


def run_facets(ctx: RunContext, upstream: str, selected: set[str] | None) -> str:
    return run_stage(FACETS, ctx, upstream, selected)
