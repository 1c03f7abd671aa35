"""Prompt structure (a static system prompt per task, the item in the user message) and the checks that
reject answers echoing the prompt's scaffolding, as small models do."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes.llm_servers import FakeOpenAIServer, schema_of

from convoscope import prompts
from convoscope.config import load_config
from convoscope.llm import LLMSettings, build_client
from convoscope.stages import hierarchy, naming, privacy, screen
from convoscope.stages.facets import REQUEST_OPENING, TASK_OPENING, _facet_request, _with_opening, facet_questions

CONFIG = load_config(None, {"llm.facets": "openai:fake@http://127.0.0.1:9"})


def _requests_for(item: str):
    """One request of every task, with `item` as the per-call data."""
    questions = facet_questions(CONFIG)
    return {
        "facets": _facet_request(f"User: {item}", questions),
        "facets one key": _facet_request(f"User: {item}", questions, only="task"),
        "name": naming._name_request([item], ["other"], "request"),
        "propose": hierarchy._names_request("propose_parents", clusters=f"- {item}", desired=3, low=2, high=4),
        "dedupe": hierarchy._names_request("dedupe_parents", candidates=f"- {item}", desired=3, low=2, high=4),
        "assign": hierarchy._naming_request("assign_parent", temperature=0.2, max_tokens=300, schema=hierarchy.ASSIGN_SCHEMA, task="assign",
                                            child=item, parents="- a\n- b"),
        "rename": hierarchy._naming_request("rename_parent", temperature=1.0, max_tokens=200, schema=prompts.NAME_SCHEMA, task="rename", children=f"- {item}"),
        "audit": privacy.audit_request(item, "d"),
        "rewrite": privacy.rewrite_request(item, "d", ["w"]),
    }


def test_every_task_has_a_static_system_prompt_and_the_item_only_in_the_user_message():
    first, second = _requests_for("ZEBRA-ITEM-ONE"), _requests_for("QUOKKA-ITEM-TWO")
    for task in first:
        a, b = first[task], second[task]
        assert a.system and a.system == b.system, task  # identical on every call: cacheable
        assert "ZEBRA" not in a.system and "ZEBRA" in a.messages[-1].content, task
        assert "$" not in a.system + a.messages[-1].content, task  # every placeholder filled
    assert first["facets"].system == first["facets one key"].system  # per-facet calls share it too
    assert "<conversation>" not in first["facets"].system and "<conversation>" in first["facets"].messages[-1].content


def test_screen_question_is_in_the_system_prompt():
    system = prompts.system_prompt("screen", question="Is it about taxes?")
    assert "Question: Is it about taxes?" in system
    assert prompts.user_prompt("screen", conversation="User: hi").startswith("<conversation>")
    assert screen.SCREEN_SCHEMA["required"] == ["answer"]


def test_custom_facets_extend_the_same_system_prompt():
    cfg = load_config(None, {"llm.facets": "openai:fake@http://127.0.0.1:9",
                             "facets.custom": [{"name": "mood", "question": "How does the user feel?", "type": "category", "choices": ["ok", "bad"]}]})
    request = _facet_request("User: hi", facet_questions(cfg))
    assert request.system.startswith(prompts.render("facets_system")) and request.system.endswith("Answer with exactly one of: ok, bad.")
    assert set(request.json_schema["required"]) == {"request", "task", "language", "concerning", "mood"}


@pytest.mark.parametrize("value", [
    "The task is to the assistant is asked to explain recursion.",
    "The user's overall request for the assistant is to <verb> <general description>.",
    "The user wants help writing a cover letter.",
    "the assistant is asked to translate a poem",
    "The task is to The task is to fix code.",
])
def test_echoed_scaffolding_in_a_summary_is_rejected(value):
    assert prompts.summary_problem("task", value, TASK_OPENING) is not None


@pytest.mark.parametrize("value", [
    "explain how to use the past tense of irregular verbs in Spanish",
    "The user's overall request for the assistant is to write a poem about the sea.",
    "to fix a KeyError in a pandas script",
    "get instructions for stealing a car, a harmful request",
    "summarise these notes from a meeting about cluster scheduling in Kubernetes",
])
def test_ordinary_summaries_pass(value):
    assert prompts.summary_problem("request", value, REQUEST_OPENING) is None


def test_names_about_the_prompt_are_rejected_and_ordinary_names_pass():
    assert prompts.name_answer_problem({"name": "Get cooking help", "description": "Unlike the contrastive cluster, users asked about pasta."})
    assert prompts.name_answer_problem({"name": "Get cooking help", "description": "Users asked about recipes, unlike the nearby summaries."})
    assert prompts.name_answer_problem({"name": "Debug Kubernetes cluster networking", "description": "Users asked why pods could not reach each other. "
                                        "They differed from other requests by focusing on DNS."}) is None


def _complete_many(server_url: str, tmp_path, requests):
    async def go():
        client = build_client(LLMSettings(facets=f"openai:fake@{server_url}", cache=False), progress=False)
        try:
            return await client.complete_many(requests)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_model_that_echoes_first_is_asked_again_and_its_second_answer_is_kept(tmp_path):
    """A fake small model: its first answer copies the scaffolding, its answer after the feedback is clean."""

    def responder(body):
        retried = len(body["messages"]) > 2  # system, user, then the echoed answer and the feedback
        props = schema_of(body)["properties"]
        if "request" in props:
            if not retried:
                return json.dumps({"request": "The user's overall request for the assistant is to the user asks for a recipe",
                                   "task": "The task is to the assistant is asked to give a recipe", "language": "English", "concerning": 1})
            return json.dumps({"request": "get a recipe for a vegetable soup", "task": "give a recipe", "language": "English", "concerning": 1})
        if not retried:
            return json.dumps({"name": "Soup recipes", "description": "Unlike the contrastive cluster, these summaries asked about soup."})
        return json.dumps({"name": "Ask for soup recipes", "description": "Users asked for soup recipes. They wanted quick vegetarian ones."})

    with FakeOpenAIServer(responder=responder) as server:
        facets, name = _complete_many(server.url, tmp_path, [_facet_request("User: soup?", facet_questions(CONFIG)),
                                                             naming._name_request(["soup"], ["bread"], "request")])
        feedback = [b["messages"][-1]["content"] for b in server.requests if len(b["messages"]) > 2]
    assert server.request_count == 4 and len(feedback) == 2
    assert "must start with a verb" in feedback[0] or "repeats the instructions" in feedback[0]
    assert not facets.failed and _with_opening(facets.parsed["request"], REQUEST_OPENING) == f"{REQUEST_OPENING} get a recipe for a vegetable soup"
    assert _with_opening(facets.parsed["task"], TASK_OPENING) == f"{TASK_OPENING} give a recipe"
    assert not name.failed and name.parsed["name"] == "Ask for soup recipes"


def test_a_model_that_always_echoes_fails_the_item(tmp_path):
    answer = json.dumps({"name": "x", "description": "The contrastive cluster was different."})
    with FakeOpenAIServer(responder=lambda body: answer) as server:
        (name,) = _complete_many(server.url, tmp_path, [naming._name_request(["soup"], ["bread"], "request")])
    assert name.failed and server.request_count == 3  # asked, then re-asked twice (schema_retries)
