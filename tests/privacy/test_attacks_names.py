"""Attacks 3, 6 (side channels), 11 and the combined end-to-end check of issue 11: names, contact
details and model text that must never reach an analyst, in extractive and LLM mode."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from privacy.adversarial_llm import JUSTIFICATION_MARKER, hierarchy_prompts
from privacy.harness import (CONTACT, CRABTREE, LANDLORD, MIN_ACCOUNTS, THEREMIN, found, internal, members, published,
                             report_json, shared_run)
from convoscope.store import RunStore


DP_ARGS = ("--privacy", "dp", "--epsilon", "1")  # differential privacy mode (issue 16) must stop the same attacks


@pytest.fixture(scope="module", params=["extractive", "llm", "dp-extractive", "dp-llm"])
def run(request):
    if request.param.startswith("dp-"):
        return shared_run(request.param.removeprefix("dp-"), name="attacks-dp", extra_args=DP_ARGS)
    return shared_run(request.param)


@pytest.fixture(scope="module")
def llm_run():
    return shared_run("llm")


def test_attack3_campaign_naming_a_private_person(run):
    leaked = found(run.outputs(), LANDLORD)
    assert not leaked, f"7 accounts x 4 conversations about 'my landlord Zebulon Quargmire at 42 Wobbleton Lane' published: {leaked}"


def test_planted_contact_details_never_reach_an_analyst(run):
    leaked = found(run.outputs(), CONTACT)
    assert not leaked, f"planted e-mail / phone / address published: {leaked}"


def test_small_groups_named_by_the_summariser_are_not_published(run):
    leaked = found(run.outputs(), CRABTREE + THEREMIN)
    assert not leaked, f"a group of 2 accounts was named in published text: {leaked}"


def test_attack6_audit_justification_is_never_published(llm_run):
    assert JUSTIFICATION_MARKER not in llm_run.outputs(), "the auditor's free-text justification reached an analyst"


def test_attack6_hierarchy_prompts_never_see_withheld_children(llm_run):
    prompts = hierarchy_prompts(llm_run.requests)
    assert prompts, "no hierarchy prompts recorded"
    leaked = sorted({name for p in prompts for name in found(p, CRABTREE + THEREMIN)})
    assert not leaked, f"propose/dedupe/assign/rename prompts named a base cluster withheld by the size gates: {leaked}"
    # a cluster withheld only by secondary suppression (to hide a sibling's small remainder) passed every
    # check on its own, name included; the prompts may show it
    withheld_names = [c["name"] for c in internal(llm_run.run_dir)["clusters"]
                      if c["kind"] == "cluster" and not c["published"] and c["name"] and c["level"] == max_level(llm_run)
                      and "remainder" not in (c["withheld_reason"] or "")]
    # the copying fake can give two clusters the same name: a name a shown cluster also has proves nothing
    shown_names = {c["name"] for c in internal(llm_run.run_dir)["clusters"]
                   if c["kind"] == "cluster" and c["level"] == max_level(llm_run)
                   and (c["published"] or "remainder" in (c["withheld_reason"] or ""))}
    shown = [n for n in withheld_names if n not in shown_names and any(n in p for p in prompts)]
    assert not shown, f"names of withheld base clusters in hierarchy prompts: {shown}"


def max_level(run) -> int:
    return report_json(run.run_dir)["levels"] - 1


def test_attack6_explorer_has_no_coordinates_of_withheld_conversations(run):
    for facet in report_json(run.run_dir)["hierarchies"]:
        report = report_json(run.run_dir, facet)
        base = report["levels"] - 1
        published_base = sum(c["size"] for c in published(report, base))
        data = json.loads(_data_json(run.run_dir, facet))
        if (report.get("privacy_guarantee") or {}).get("mode") == "dp":  # DP mode releases no conversation's position at all
            published_base = 0
        assert data["points"]["n"] == published_base, (
            f"{facet}: the explorer carries {data['points']['n']} points, published base clusters hold {published_base}")


def _data_json(run_dir, facet):
    from convoscope.explorer.bundle import build_payload, payload_json

    return payload_json(build_payload(RunStore(run_dir).for_facet(facet).root)).decode()


# -- attack 11: the facet prompt, and k-anonymous vocabulary in LLM-written text ----------------------

INSTRUCTION_WORDS = re.compile(r"\b(repeat|copy|include|insert|quote|rate|score|ignore|disregard|reveal|mention|write|print|output|say)\b", re.I)


def test_attack11_facet_prompt_has_no_quotable_injection_example():
    from convoscope import prompts
    from convoscope.config import load_config
    from convoscope.stages.facets import _facet_request, facet_questions

    request = _facet_request("User: hello", facet_questions(load_config(None, {"llm.facets": "openai:fake@http://127.0.0.1:9"})))
    text = "\n".join([request.system or ""] + [m.content for m in request.messages])
    quoted = re.findall(r"\"([^\"]+)\"|“([^”]+)”", text)
    spans = [next(s for s in q if s) for q in quoted]
    bad = [s for s in spans if INSTRUCTION_WORDS.search(s)]
    assert not bad, f"the facet prompt quotes instruction text a small model could copy as a summary: {bad}"
    assert "repeat the user" not in text.lower() and "rate this" not in text.lower()
    assert prompts.render("facets_system") == (request.system or "")


SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+)([A-Z][\w'-]*)")


def identifying(text: str) -> set[str]:
    """Capitalised words not at a sentence start, and numbers."""
    starts = {m.start(1) for m in SENTENCE_START.finditer(text)}
    out = set()
    for m in re.finditer(r"[A-Za-z][\w'-]*|\d+(?:[.,:]\d+)*", text):
        tok = m.group(0)
        if tok[0].isdigit() or (tok[0].isupper() and m.start() not in starts):
            out.add(tok)
    return out


def test_attack11_llm_names_use_only_words_of_min_accounts_summaries(llm_run):
    tables = internal(llm_run.run_dir)
    summaries = {f["conv_id"]: " ".join(str(f.get(k) or "") for k in ("request", "task")) for f in tables["facets"]}
    problems = []
    for facet in report_json(llm_run.run_dir)["hierarchies"]:
        groups = members(llm_run.run_dir, facet)
        for c in published(report_json(llm_run.run_dir, facet)):
            if c["name"] == "Name withheld":
                continue
            text = f"{c['name']}. {c.get('description') or ''}"
            per_token = defaultdict(set)
            convs = groups[c["id"]]
            for conv_id, acc in convs:
                low = summaries.get(conv_id, "").lower()
                for tok in identifying(text):
                    if re.search(rf"(?<!\w){re.escape(tok.lower())}(?!\w)", low):
                        per_token[tok].add(acc)
            for tok in identifying(text):
                if len(per_token[tok]) < MIN_ACCOUNTS:
                    problems.append(f"{facet}/{c['id']} '{tok}' ({len(per_token[tok])} accounts) in {text[:120]!r}")
    assert not problems, f"{len(problems)} capitalised words/numbers in published LLM text come from fewer than {MIN_ACCOUNTS} accounts: {problems[:15]}"
