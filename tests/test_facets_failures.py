"""Facet extraction that fails for every conversation stops the run with a clear error and writes nothing
that looks complete; a partial failure keeps today's behaviour (a warning, empty facets, counted)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from convoscope.cli import app
from convoscope.stages.facets import reason_without_text
from convoscope.store import RunStore
from fakes.clio_responder import make_responder
from fakes.corpus import make_records, write_jsonl
from fakes.llm_servers import FakeOpenAIServer, schema_of
from fakes.shared_calls import answer_shared_calls

SECRET = "Quuxbarian"  # in every conversation: must never reach the error message


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    records = make_records(per_topic=6, accounts=20, distinct=True)
    for r in records:
        r["messages"][0]["content"] += f" My name is {SECRET}."
    return write_jsonl(tmp_path_factory.mktemp("failing") / "c.jsonl", records)


def _not_json(body):
    return "Sorry, I cannot help with that."


def _run(data, out, url, *extra):
    return CliRunner().invoke(app, ["run", str(data), "--out", str(out), "--llm", f"openai:fake@{url}", "--no-cache", "--quiet",
                                    *extra])


@pytest.mark.parametrize("per_call", ["1", "4"])
def test_every_facet_call_failing_stops_the_run_and_a_rerun_resumes(data, tmp_path, per_call):
    out = tmp_path / "run"
    with FakeOpenAIServer(responder=_not_json) as server:
        result = _run(data, out, server.url, "--conversations-per-call", per_call)
    text = f"{result.output}{result.exception}"
    assert result.exit_code not in (0, None), text
    assert "facet extraction failed for every conversation" in text and "the answer contains no JSON object" in text
    assert "rerun the same command" in text and SECRET not in text and "Done" not in text
    store = RunStore(out)
    assert store.stage_record("ingest") and store.stage_record("facets") is None  # nothing after ingest: no facets table
    assert not store.has("table:facets") and not store.has("json:aggregates")
    # the same command against a working model resumes at facets and finishes
    with FakeOpenAIServer(responder=answer_shared_calls(make_responder())) as server:
        rerun = _run(data, out, server.url, "--conversations-per-call", per_call)
    assert rerun.exit_code == 0, f"{rerun.output}{rerun.exception}"
    assert RunStore(out).stage_record("facets")["failed"] == 0 and RunStore(out).has("json:aggregates")


def test_some_facet_calls_failing_is_a_warning_and_the_run_finishes(data, tmp_path):
    answer = make_responder()
    calls = {"n": 0}

    def every_third_fails(body):
        if "request" in ((schema_of(body) or {}).get("properties") or {}):  # a facets call
            calls["n"] += 1
            if calls["n"] % 3 == 0:
                return "no json here"
        return answer(body)

    with FakeOpenAIServer(responder=every_third_fails) as server:
        result = _run(data, tmp_path / "run", server.url)
    assert result.exit_code == 0, f"{result.output}{result.exception}"
    record = RunStore(tmp_path / "run").stage_record("facets")
    assert 0 < record["failed"] < record["rows"]
    assert "first_error" not in record


def test_an_error_quoting_the_conversation_is_cut_before_its_details():
    conversation = f"User: please help me write to my landlord, my name is {SECRET} and I live at 12 Elm Street"
    quoted = f"HTTP 400: invalid request: 'please help me write to my landlord, my name is {SECRET}' is too long"
    reason = reason_without_text(quoted, conversation)
    assert SECRET not in reason and "landlord" not in reason and reason.startswith("HTTP 400")
    plain = "output does not match the schema at $.request (type failed) (after 3 attempts)"
    assert reason_without_text(plain, conversation) == plain
