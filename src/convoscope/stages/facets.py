"""Stage 2: facets. One row per analysed conversation.

LLM mode: the Clio facets (Request, Task, Language, Concerning, and the user's custom facets) come
from one call for several conversations (`facets.conversations_per_call`, 1 by default: the static prompt
is paid once per call; the paper pays once per facet and conversation), one call per conversation, or
one call per facet with `facets.per_facet_calls`. Extractive mode: only computed facets (language by fastText's identifier, see languages.py);
the LLM facets are recorded as unavailable, never faked.

Shared calls and privacy: a model may copy one conversation's details into another's answer. A call
therefore holds conversations of one *account bucket* only (accounts split into buckets of about
`conversations_per_call` by their keyed hash, so all of an account's conversations share a bucket), the
bucket is stored per conversation (column `call_bucket`), and the word checks of published text count
distinct buckets instead of accounts (analysis_text.word_check_units): a copied word counts once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from convoscope import prompts
from convoscope.config import Config, CustomFacet
from convoscope.context import RunContext
from convoscope.errors import ConvoscopeError
from convoscope.languages import RULE_VERSION as LANGUAGE_RULE_VERSION, detect_languages
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.conversation_format import LLM_BATCH, TRUNCATION_RULE, approx_tokens, batches, call_groups, format_conversation
from convoscope.scrub import SCRUB_VERSION
from convoscope.stage_runner import Stage, StageOutput, StageRecord, optional_field, run_stage
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
    # an enum, not minimum/maximum: llama.cpp's grammar enforces enums but not integer bounds (SmolLM2 answered 7)
    "concerning": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
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


# llama.cpp only: its grammar bounds free-text answers, which a tiny model otherwise fills until max_tokens
# (SmolLM2-135M did, leaving half its answers cut before the JSON closed). Not sent to hosted APIs:
# OpenAI's strict structured outputs refuse maxLength.
LOCAL_MAX_TEXT_CHARS = 300


def facet_questions(config: Config) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """key -> (question, JSON schema of the answer); the question is None for the built-in facets,
    which the system prompt describes."""
    questions: dict[str, tuple[str | None, dict[str, Any]]] = {key: (None, schema) for key, schema in BUILTIN_SCHEMAS.items()}
    for facet in config.facets.custom:
        questions[facet.name] = (_custom_question(facet), _custom_schema(facet))
    if (config.llm.facets or "").startswith("llamacpp:"):
        questions = {key: (q, {**schema, "maxLength": LOCAL_MAX_TEXT_CHARS} if schema.get("type") == "string" and "enum" not in schema else schema)
                     for key, (q, schema) in questions.items()}
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


def group_ids(size: int) -> list[str]:
    """The ids a shared call gives its conversations (never their own ids, which the model need not see)."""
    return [f"c{j + 1}" for j in range(size)]


def _answer_schema(questions: dict[str, tuple[str | None, dict[str, Any]]]) -> dict[str, Any]:
    keys = list(questions)
    return {"type": "object", "properties": {key: questions[key][1] for key in keys}, "required": keys, "additionalProperties": False}


def _group_request(conversation_texts: list[str], questions: dict[str, tuple[str | None, dict[str, Any]]]) -> LLMRequest:
    """One call for several conversations of one account bucket; the answer has one entry per id, each
    checked on its own by the stage (an entry that fails is re-asked alone, so no answer_check here:
    it would re-ask the whole group for one bad entry)."""
    ids = group_ids(len(conversation_texts))
    # the entry schema once, referenced by every id: providers bill the schema as input tokens
    schema = {"$defs": {"facets": _answer_schema(questions)}, "type": "object", "properties": {i: {"$ref": "#/$defs/facets"} for i in ids},
              "required": ids, "additionalProperties": False}
    body = "\n\n".join(f'<conversation id="{i}">\n{text}\n</conversation>' for i, text in zip(ids, conversation_texts))
    return LLMRequest(
        messages=(ChatMessage("user", body),),
        system=f"{facets_system_prompt(questions)}\n\n{prompts.render('facets_group')}",
        temperature=0.2,
        max_tokens=len(ids) * (100 + 60 * len(questions)),
        json_schema=schema,
        role="facets",
        task="facets",
    )


def conversations_per_call(ctx: RunContext) -> int:
    """Conversations per facets call in this run: 1 in DP mode (a shared call would let one account's
    conversation change another's facets, breaking the per-account sensitivity), with per-facet calls,
    and on a Ray shard (its scratch store does not know the run's accounts, which the buckets need)."""
    config = ctx.config
    if (not config.llm_mode or config.privacy.mode == "dp" or config.facets.per_facet_calls
            or getattr(ctx, "shard", None) is not None):
        return 1
    return config.facets.conversations_per_call


def _single_row(resp: Any) -> dict[str, Any]:
    if resp.failed or not isinstance(resp.parsed, dict):
        return {"failed": True, "error": resp.error or "the answer is not a JSON object"}
    return {**resp.parsed, "failed": False}


class FacetsFailed(ConvoscopeError):
    """No conversation got its facets (every LLM call failed): a run built on empty facets would only look complete."""


def reason_without_text(error: str | None, text: str) -> str:
    """An LLM error as the user may see it: never a piece of the conversation it was about (an endpoint's
    error body can quote the prompt): then only the part before its first ':'."""
    reason = " ".join((error or "no reason given").split())[:300]
    flat = " ".join(text.split()).lower()
    window = 20
    if any(reason[i:i + window].lower() in flat for i in range(max(1, len(reason) - window + 1))):
        return reason.split(":")[0][:80] + " (its details quote the conversation and are left out)"
    return reason


def check_some_facets(ctx: RunContext, failed: int, rows: int, first_error: str | None) -> None:
    """Facet extraction that failed for every conversation stops the run before the facets table is written (a
    partial failure does not: those conversations are kept with empty facets, counted as `failed`)."""
    if not ctx.config.llm_mode or rows == 0 or failed < rows:
        return
    raise FacetsFailed(
        f"facet extraction failed for every conversation ({failed:,} of {rows:,}, facet model {ctx.config.llm.facets}); "
        f"first error: {first_error or 'unknown'}. Nothing was written after ingest. Check the facet model and its endpoint "
        "(--llm and the llm.* settings: docs/llm.md), then rerun the same command: it resumes at the facets stage.")


def _entry_problem(entry: Any, validator: Any, openings: dict[str, str]) -> str | None:
    if not isinstance(entry, dict):
        return "missing"
    error = next(iter(validator.iter_errors(entry)), None)
    if error is not None:
        return error.message
    return prompts.facet_answer_problem(entry, openings)


def _group_entries(resp: Any) -> dict[str, Any]:
    """The entries of a shared call's answer; from the raw text when the whole answer failed its schema
    (so the entries that are fine are kept and only the others re-asked)."""
    if not resp.failed and isinstance(resp.parsed, dict):
        return resp.parsed
    try:
        value = json.loads(resp.text or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _grouped_facets(ctx: RunContext, texts: list[str], buckets: list[int], size: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Facets of `texts` in shared calls within buckets; entries missing or failing the checks are re-asked
    alone. Returns the rows in order and the call counts."""
    from jsonschema import Draft202012Validator

    config = ctx.config
    questions = facet_questions(config)
    validator = Draft202012Validator(_answer_schema(questions))
    groups = call_groups(buckets, [approx_tokens(t) for t in texts], size, config.facets.max_conversation_tokens)
    requests = [_group_request([texts[i] for i in g], questions) if len(g) > 1 else _facet_request(texts[g[0]], questions) for g in groups]
    responses = ctx.complete_many(requests, description="Facets", show_progress=False)  # the stage shows its own bar
    rows: list[dict[str, Any] | None] = [None] * len(texts)
    alone: list[int] = []
    for g, resp in zip(groups, responses):
        if len(g) == 1:
            rows[g[0]] = _single_row(resp)
            continue
        entries = _group_entries(resp)
        for conv_id, i in zip(group_ids(len(g)), g):
            entry = entries.get(conv_id)
            if isinstance(entry, dict) and _entry_problem(entry, validator, SUMMARY_OPENINGS) is None:
                rows[i] = {**entry, "failed": False}
            else:
                alone.append(i)
    if alone:
        answers = ctx.complete_many([_facet_request(texts[i], questions) for i in alone], description="Facets", show_progress=False)
        for i, resp in zip(alone, answers):
            rows[i] = _single_row(resp)
    calls = {"shared": sum(1 for g in groups if len(g) > 1), "single": sum(1 for g in groups if len(g) == 1), "asked_alone_again": len(alone)}
    return [r if r is not None else {"failed": True} for r in rows], calls


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


def _llm_facets(ctx: RunContext, texts: list[str]) -> list[dict[str, Any]]:
    config = ctx.config
    questions = facet_questions(config)
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
                    row.setdefault("error", resp.error or "the answer is not a JSON object")
                else:
                    row[key] = resp.parsed.get(key)
            merged.append(row)
        return merged
    responses = ctx.complete_many([_facet_request(t, questions) for t in texts], description="Facets", show_progress=False)  # the stage shows its own bar
    return [_single_row(resp) for resp in responses]


@dataclass(frozen=True)
class FacetsRecord(StageRecord):
    mode: str  # "llm" or "extractive"
    failed: int  # conversations whose facet extraction failed (kept with empty facets)
    rows: int
    truncation_rule: str
    max_conversation_tokens: int
    unavailable: dict[str, str]  # facet -> why it is not computed in this mode
    conversations_per_call: int | None = optional_field()  # LLM mode: at most this many conversations shared a call
    call_buckets: int | None = optional_field()  # account buckets calls were formed in (shared calls only)
    calls: dict[str, int] | None = optional_field()  # shared calls, single calls, conversations re-asked alone
    first_error: str | None = optional_field()  # a Ray shard whose every conversation failed: why (no text), for the driver's check


def _settings(ctx: RunContext) -> tuple:
    c = ctx.config
    return (c.llm.facets if c.llm_mode else "none", c.facets.model_dump(exclude={"hierarchy_facets"}), c.privacy.scrub_identifiers and SCRUB_VERSION,
            LANGUAGE_RULE_VERSION, conversations_per_call(ctx),
            (prompts.load("facets_system").template, prompts.load("facets").template, prompts.load("facets_group").template) if c.llm_mode else None)


# Shared calls wait for their bucket-mates: conversations are held (formatted, in memory) until this many
# characters are pending, then grouped and sent. Inputs below it (about 100,000 conversations of HH's
# length) are grouped as well as their buckets allow; above, groups get smaller, never wrong.
GROUP_BUFFER_CHARS = 64_000_000


def call_bucket_count(ctx: RunContext, selected: set[str] | None, size: int) -> int:
    """Buckets of about `size` accounts among the conversations analysed."""
    table = ctx.store.read_table("conversations", columns=["conv_id", "account"])
    accounts = table.column("account").to_pylist()
    if selected is not None:
        accounts = [a for a, c in zip(accounts, table.column("conv_id").to_pylist()) if c in selected]
    return max(1, round(len(set(accounts)) / size))


def call_bucket(account_hash: str, n_buckets: int) -> int:
    """The bucket of an account, from its keyed hash (the one ingest stores), so every conversation of
    the account lands in the same bucket and nobody without the key can tell buckets in advance."""
    return int(account_hash[:15], 16) % n_buckets


def _facets(ctx: RunContext, selected: set[str] | None) -> StageOutput[FacetsRecord]:
    config = ctx.config
    custom_names = [f.name for f in config.facets.custom]
    cols: dict[str, list] = {k: [] for k in ("conv_id", "request", "task", "language", "concerning", "failed", "call_bucket")}
    for name in custom_names:
        cols[f"facet.{name}"] = []
    total = ctx.store.stage_record("ingest")["report"]["conversations"]
    convs = (c for c in ctx.iter_input() if selected is None or c.id in selected)
    size = conversations_per_call(ctx)
    n_buckets = call_bucket_count(ctx, selected, size) if size > 1 else 0
    account_key = ctx.account_key() if size > 1 else b""
    llm_rows: list[dict[str, Any] | None] = []
    detected: list[str] = []
    pending: list[tuple[int, int, str]] = []  # (row, bucket, text) waiting for a shared call
    pending_chars = 0
    calls = {"shared": 0, "single": 0, "asked_alone_again": 0}
    first_error: list[str] = []  # the first failed conversation's error, without its text

    def note_error(rows: list[dict[str, Any]], texts: list[str]) -> None:
        # every failed row comes from a call about that conversation alone (shared calls re-ask failures alone)
        if not first_error:
            bad = next((j for j, row in enumerate(rows) if row.get("failed")), None)
            if bad is not None:
                first_error.append(reason_without_text(rows[bad].get("error"), texts[bad]))
    with ctx.progress() as progress:
        task = progress.add_task("Facets", total=len(selected) if selected is not None else total)

        def flush() -> None:
            nonlocal pending_chars
            rows, counts = _grouped_facets(ctx, [t for _, _, t in pending], [b for _, b, _ in pending], size)
            note_error(rows, [t for _, _, t in pending])
            for (position, _, _), row in zip(pending, rows):
                llm_rows[position] = row
            for key, value in counts.items():
                calls[key] += value
            progress.advance(task, len(pending))
            pending.clear()
            pending_chars = 0

        for batch in batches(convs, LLM_BATCH):
            first = len(llm_rows)
            for conv in batch:
                cols["conv_id"].append(conv.id)
                cols["call_bucket"].append(call_bucket(ctx.hash_account(conv.effective_account, account_key), n_buckets) if size > 1 else None)
            detected.extend(detect_languages([c.user_text(" ") for c in batch]))
            llm_rows.extend([None] * len(batch))
            if not config.llm_mode:
                progress.advance(task, len(batch))
                continue
            texts = [format_conversation(c, config.facets.max_conversation_tokens, scrub_text=config.privacy.scrub_identifiers) for c in batch]
            if size == 1:
                llm_rows[first:] = _llm_facets(ctx, texts)
                note_error(llm_rows[first:], texts)  # type: ignore[arg-type]
                calls["single"] += len(batch)
                progress.advance(task, len(batch))
                continue
            for j, text in enumerate(texts):
                pending.append((first + j, cols["call_bucket"][first + j], text))
                pending_chars += len(text)
            if pending_chars >= GROUP_BUFFER_CHARS:
                flush()
        if pending:
            flush()
    for row, language in zip(llm_rows, detected):
        if row is None:  # extractive mode
            cols["request"].append(None)
            cols["task"].append(None)
            cols["language"].append(language)
            cols["concerning"].append(None)
            cols["failed"].append(False)
            for name in custom_names:
                cols[f"facet.{name}"].append(None)
            continue
        cols["request"].append(_with_opening(row.get("request"), REQUEST_OPENING))
        cols["task"].append(_with_opening(row.get("task"), TASK_OPENING))
        model_language = _first_language(row.get("language"))
        cols["language"].append(model_language if model_language != "Unknown" else language)
        concern = row.get("concerning")
        cols["concerning"].append(int(concern) if isinstance(concern, (int, float)) and 1 <= concern <= 5 else None)
        cols["failed"].append(bool(row.get("failed")))
        for name in custom_names:
            value = row.get(name)
            cols[f"facet.{name}"].append(None if value is None else str(value))
    types = {"concerning": pa.int8(), "failed": pa.bool_(), "call_bucket": pa.int32()}
    table = pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in cols.items()})
    failed = sum(cols["failed"])
    on_shard = getattr(ctx, "shard", None) is not None  # a Ray shard: the driver checks the merged count
    if not on_shard:
        check_some_facets(ctx, failed, table.num_rows, first_error[0] if first_error else None)
    if failed and not on_shard:
        ctx.console.print(f"[yellow]warning:[/] facet extraction failed for {count(failed, 'conversation')}; they are kept with empty facets and counted in the manifest")
    artifact = ctx.store.write_table("facets", table)
    return StageOutput([artifact], FacetsRecord(
        mode="llm" if config.llm_mode else "extractive", failed=failed, rows=table.num_rows,
        truncation_rule=TRUNCATION_RULE, max_conversation_tokens=config.facets.max_conversation_tokens,
        unavailable={} if config.llm_mode else {"request": "needs an LLM", "task": "needs an LLM", "concerning": "needs an LLM (run with --llm)"},
        conversations_per_call=size if config.llm_mode else None, call_buckets=n_buckets or None, calls=calls if config.llm_mode else None,
        first_error=first_error[0] if on_shard and first_error and failed == table.num_rows else None,
    ))


# input: the screener's selection (None: every conversation), part of the fingerprint as a sorted id list
FACETS = Stage("facets", _settings, _facets, inputs_key=lambda selected: sorted(selected) if selected is not None else None)


def run_facets(ctx: RunContext, upstream: str, selected: set[str] | None) -> str:
    return run_stage(FACETS, ctx, upstream, selected)
