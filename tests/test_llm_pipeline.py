"""LLM mode end to end against a fake OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys


from convoscope.config import load_config
from convoscope.pipeline import run_pipeline
from convoscope.report import report_json
from fakes.clio_responder import make_responder
from fakes.corpus import make_records, write_jsonl
from fakes.llm_servers import FakeAnthropicServer, FakeOpenAIServer

SETTINGS = {"cluster.conversations_per_cluster": 10, "privacy.min_conversations": 5, "privacy.min_accounts": 3,
            "facets.custom": [{"name": "sentiment", "question": "How does the user feel?", "type": "category", "choices": ["positive", "neutral", "negative"]}]}

TASK_MARKERS = {"facets": "<conversation>", "name": "<cluster_summaries>", "propose": "Propose broader parent categories",
                "dedupe": "<candidates>", "assign": "Which of these higher-level categories", "rename": "were grouped under one higher-level",
                "audit": "You are a privacy auditor"}


def _all_text(body) -> str:
    return "\n".join(m["content"] for m in body["messages"])


def test_every_stage_runs_and_a_rerun_costs_zero_calls(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=40, accounts=30))
    cache = tmp_path / "cache"
    with FakeOpenAIServer(responder=make_responder()) as server:
        cfg = load_config(None, {**SETTINGS, "llm.facets": f"openai:fake@{server.url}", "llm.cache_dir": str(cache)})
        store = run_pipeline(data, tmp_path / "run1", cfg, show_progress=False)
        tasks = {task for b in server.requests for task, marker in TASK_MARKERS.items() if marker in _all_text(b)}
        first = server.request_count
        again = run_pipeline(data, tmp_path / "run2", cfg, show_progress=False)
        assert server.request_count == first  # same data, same settings, new directory: all from the cache
    assert {"facets", "name", "propose", "assign", "rename", "audit"} <= tasks
    usage = store.manifest["llm_usage"]
    assert usage["roles"]["facets"]["calls"] == store.read_table("facets").num_rows  # ONE call per conversation
    assert again.manifest["llm_usage"]["total"]["requests"] == 0
    rep = report_json(store)
    assert rep["run"]["mode"] == "llm"
    names = {c["name"] for c in rep["clusters"] if c["kind"] == "cluster"}
    assert any("taxes" in n for n in names) and any("cooking" in n for n in names)
    facets = store.read_table("facets")
    assert all(r.startswith("The user's overall request for the assistant is to") for r in facets.column("request").to_pylist())
    assert set(facets.column("facet.sentiment").to_pylist()) <= {"positive", "neutral", "negative"}
    clusters = store.read_table("clusters").to_pylist()
    audited = [c for c in clusters if c["audit_score"] is not None]
    assert audited and all(c["audit_reason"] for c in audited)
    top = [c for c in rep["clusters"] if c["level"] == 0 and c["kind"] == "cluster"]
    assert "concerning" in top[0]["facets"] and "sentiment" in top[0]["facets"]


def test_anthropic_backend_runs_the_pipeline(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=25, accounts=20))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropicServer(responder=make_responder(), api_key="test-key") as server:
        cfg = load_config(None, {**SETTINGS, "llm.facets": f"anthropic:claude-test@{server.url}", "llm.cache": False})
        store = run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
        assert server.request_count > 0
    assert store.read_json("aggregates")["run"]["mode"] == "llm"


def test_screener_selects_conversations(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=30, accounts=25))

    base = make_responder()

    def responder(body):
        text = body["messages"][-1]["content"]
        if "Question: Is this about taxes?" in body["messages"][0]["content"]:  # the question is in the system prompt
            return json.dumps({"answer": "yes" if "tax" in text.split("</conversation>")[0].lower() else "no"})
        return base(body)

    with FakeOpenAIServer(responder=responder) as server:
        cfg = load_config(None, {**SETTINGS, "llm.facets": f"openai:fake@{server.url}", "llm.cache": False, "facets.screener": "Is this about taxes?",
                                 "privacy.min_conversations": 2, "privacy.min_accounts": 2})
        store = run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
    screen = store.manifest["stages"]["screen"]
    assert 0 < screen["selected"] < screen["screened"]
    assert store.read_table("facets").num_rows == screen["selected"]


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "convoscope", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_bad_key_stops_the_run_at_once_with_one_line_and_exit_2(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=10, accounts=10))
    with FakeOpenAIServer(api_key="right-key") as server:
        result = _cli("run", str(data), "--out", str(tmp_path / "run"), "--llm", "openai:gpt-4o-mini@" + server.url, "--quiet", "--no-cache",
                      env={"OPENAI_API_KEY": "wrong-key"})
        sent = server.request_count
    assert result.returncode == 2
    from convoscope.llm import LLMSettings

    assert sent <= LLMSettings().max_concurrency  # stopped at once: no retries, nothing beyond the requests already in flight
    assert "Traceback" not in result.stderr
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(error_lines) == 1 and "401" in error_lines[0], result.stderr


def test_retry_after_429_slows_down_but_loses_nothing(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=10, accounts=10))
    with FakeOpenAIServer(responder=make_responder()) as server:
        server.fail_next(3, status=429, retry_after=1)
        cfg = load_config(None, {**SETTINGS, "llm.facets": f"openai:fake@{server.url}", "llm.cache": False})
        store = run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
    facets = store.read_table("facets")
    assert not any(facets.column("failed").to_pylist())
    assert store.manifest["llm_usage"]["total"]["retries"] >= 3


def test_a_hierarchy_per_open_text_facet(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=30, accounts=25))
    custom = [{"name": "goal", "question": "What does the user want to achieve?", "type": "text"}]
    with FakeOpenAIServer(responder=make_responder()) as server:
        cfg = load_config(None, {**SETTINGS, "facets.custom": custom, "facets.hierarchy_facets": ["request", "task", "goal"],
                                 "llm.facets": f"openai:fake@{server.url}", "llm.cache_dir": str(tmp_path / "cache")})
        store = run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
        first = server.request_count
        run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
        assert server.request_count == first  # the rerun resumes every hierarchy
    assert store.facets() == ["request", "task", "goal"]
    assert report_json(store)["facet"] == "request" and report_json(store)["hierarchies"] == ["request", "task", "goal"]
    task = store.for_facet("task")
    assert task.root == tmp_path / "run" / "hierarchies" / "task"
    assert task.for_facet("goal").root == store.for_facet("goal").root and task.for_facet("request").root == store.root
    task_report = report_json(task)
    assert task_report["facet"] == "task" and task_report["run"]["conversations"] == report_json(store)["run"]["conversations"]
    # the task hierarchy clusters the task summaries, not the requests
    assert task.read_array("embeddings").shape == store.read_array("embeddings").shape
    assert not (task.read_array("embeddings") == store.read_array("embeddings")).all()
    assert {c["name"] for c in task_report["clusters"]} != {c["name"] for c in report_json(store)["clusters"]}
    # every hierarchy is a complete, gated tree of the same conversations
    for facet in store.facets():
        rep = report_json(store.for_facet(facet))
        assert sum(c["size"] for c in rep["clusters"] if c["level"] == 0) == rep["run"]["conversations"]
    from convoscope.explorer import write_explorer

    html = write_explorer(task.root)
    assert html == task.root / "explorer.html" and "The task is to answer a question" not in html.read_text()
    goal = report_json(store.for_facet("goal"))  # every answer identical: one cluster, still a valid tree
    assert goal["facet"] == "goal" and goal["levels"] >= 1
    # the CLI reads a facet's hierarchy, and says which exist when asked for one that does not
    env = {**os.environ, "NO_COLOR": "1"}
    shown = subprocess.run([sys.executable, "-m", "convoscope", "report", str(tmp_path / "run"), "--facet", "task", "--json"],
                           capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["facet"] == "task"
    usage = subprocess.run([sys.executable, "-m", "convoscope", "analyze", "usage", str(tmp_path / "run"), "--facet", "task", "--json"],
                           capture_output=True, text=True, env=env)
    assert usage.returncode == 0, usage.stderr
    assert "The task is to answer" not in usage.stdout and {c["name"] for c in task_report["clusters"] if c["level"] == 0} & set(
        re.findall(r'"name": "([^"]+)"', usage.stdout))
    pages = subprocess.run([sys.executable, "-m", "convoscope", "explore", str(tmp_path / "run")], capture_output=True, text=True, env=env)
    # one page for the run, with a switcher between its hierarchies
    assert pages.returncode == 0 and "hierarchies: request, task, goal" in " ".join(pages.stderr.split())
    assert (store.root / "explorer.html").is_file()
    missing = subprocess.run([sys.executable, "-m", "convoscope", "report", str(tmp_path / "run"), "--facet", "sentiment"],
                             capture_output=True, text=True, env=env)
    assert missing.returncode != 0 and "no hierarchy for facet 'sentiment'" in missing.stderr and "request, task, goal" in missing.stderr


def test_hierarchy_facets_are_checked():
    import pytest

    from convoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="extractive mode"):
        load_config(None, {"facets.hierarchy_facets": ["request", "task"]})
    with pytest.raises(ConfigError, match="not an open-text facet"):
        load_config(None, {**SETTINGS, "llm.facets": "openai:fake@http://127.0.0.1:9", "facets.hierarchy_facets": ["sentiment"]})
    assert load_config(None, {"llm.facets": "openai:fake@http://127.0.0.1:9", "facets.hierarchy_facet": "task"}).facets.hierarchy_facets == ["task"]


def test_one_live_display_at_a_time(tmp_path, monkeypatch):
    """The facets stage shows its own progress bar, so the LLM client does not open a second live
    display on stderr for those calls; the stages without a bar of their own get the client's."""
    from convoscope.llm.client import Client

    opened: list[str] = []
    original = Client._progress_bar

    def spy(self, description, total):
        opened.append(description)
        return original(self, description, total)

    monkeypatch.setattr(Client, "_progress_bar", spy)
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=20, accounts=20))
    with FakeOpenAIServer(responder=make_responder()) as server:
        cfg = load_config(None, {**SETTINGS, "llm.facets": f"openai:fake@{server.url}", "llm.cache": False})
        run_pipeline(data, tmp_path / "run", cfg, show_progress=True)
    assert "Facets" not in opened and "Naming clusters" in opened
