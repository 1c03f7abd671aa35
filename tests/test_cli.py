"""The command line as a user meets it: exit codes, one-line errors, JSON output, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fakes.corpus import make_records, write_jsonl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cli(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "convoscope", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_on_every_command():
    for command in ("run", "assign", "demo", "validate", "report", "explore", "serve", "estimate", "config", "compare", "analyze", "eval"):
        result = cli(command, "--help")
        if command == "eval" and result.returncode != 0:
            pytest.skip("eval commands not registered")
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage" in result.stdout


def test_validate_reports_the_broken_line(tmp_path):
    lines = [json.dumps({"id": f"c{i}", "text": f"how do I reset my password number {i}"}) for i in range(30)]
    lines[16] = '{"id": "c16", "text": broken'
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = cli("validate", str(path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["invalid"] == 1 and report["conversations"] == 29
    assert "broken.jsonl:17" in report["invalid_examples"][0]


def test_validate_table_reads_as_text(tmp_path):
    """The table printed Python values: 'missing_account True', 'first_with_account None', a list's repr."""
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"how do I reset my password {i}"}) for i in range(3)) + "\n{\"text\": 5}\n")
    result = cli("validate", str(path), "--skip-invalid", env={"COLUMNS": "200"})
    assert result.returncode == 1
    assert "None" not in result.stdout and "True" not in result.stdout and "['" not in result.stdout
    assert "first_with_account     -" in result.stdout and "missing_account        yes" in result.stdout


def test_run_stops_on_a_broken_record_with_file_and_line(tmp_path):
    records = make_records(per_topic=5, accounts=5)
    path = write_jsonl(tmp_path / "c.jsonl", records)
    lines = path.read_text().splitlines()
    lines[4] = json.dumps({"id": "bad", "messages": [{"role": "wizard", "content": "hi"}]})
    path.write_text("\n".join(lines) + "\n")
    result = cli("run", str(path), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "c.jsonl:5" in result.stderr and "role" in result.stderr


def test_empty_and_unknown_inputs_fail_cleanly(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    garbage = tmp_path / "x.bin"
    garbage.write_bytes(bytes(range(256)) * 4)
    for path in (empty, garbage, tmp_path / "missing.jsonl"):
        result = cli("validate", str(path))
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) <= 3


def test_bad_config_file_is_a_clear_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[privacy]\nmin_accounts = 0\nbogus = 1\n")
    result = cli("config", "--show", "--config", str(cfg))
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "privacy.min_accounts" in message and f"unknown setting [privacy] bogus in {cfg}" in message and "Extra inputs" not in message


def test_hierarchies_other_than_request_need_an_llm(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "how do I bake bread"}\n')
    result = cli("run", str(data), "--out", str(tmp_path / "run"), "--hierarchies", "request,task", "-q")
    message = " ".join(result.stderr.split())
    assert result.returncode == 2 and "Traceback" not in message
    assert "facets.hierarchy_facets: 'task' is written by the LLM" in message
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_config_show_lists_every_setting():
    result = cli("config", "--show")
    assert result.returncode == 0
    for name in ("privacy.min_accounts", "llm.facets", "embedding.model", "hierarchy.top_clusters", "map.n_neighbors"):
        assert name in result.stdout


@pytest.mark.skipif(not (SHARED / "hh-rlhf-harmless").exists(), reason="shared data not present")
def test_estimate_calls_nothing():
    result = cli("estimate", str(SHARED / "hh-rlhf-harmless"), "--llm", "anthropic:claude-3-5-haiku-latest", "--json",
                 env={"ANTHROPIC_API_KEY": "", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})  # any network use would fail
    assert result.returncode == 0, result.stderr
    est = json.loads(result.stdout)
    assert est["conversations"] == 2312 and est["stages"]["facets"]["calls"] == 2312 and est["total"]["cost_usd"] > 0


def test_estimate_with_an_unpriced_model_says_unknown_not_zero(tmp_path):
    """A local server's model has no price: its stages read 'unknown', not $0.00, and the note comes once."""
    path = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=5, accounts=10))
    local = "openai:Qwen2.5-7B-Instruct@http://127.0.0.1:9/v1"
    result = cli("estimate", str(path), "--llm", local, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "cost unknown" in result.stdout and "$0.00" not in result.stdout and " 0.00 " not in result.stdout
    assert result.stdout.count(f"unknown price for {local}") == 1
    mixed = cli("estimate", str(path), "--llm", "anthropic:claude-3-5-haiku-latest", "--naming-llm", local, env={"COLUMNS": "200"})
    assert mixed.returncode == 0, mixed.stderr
    assert "for the stages with a known price" in mixed.stdout


def test_run_summary_llm_cost_of_an_unpriced_model_is_unknown():
    from convoscope.cli import llm_usage_line

    role = {"calls": 3, "cached_calls": 0, "input_tokens": 900, "output_tokens": 90, "cost_usd": 0.0}
    local = {**role, "backend": "openai:m@http://127.0.0.1:9/v1", "price_known": False}
    total = {key: 3 for key in ("calls", "input_tokens", "output_tokens")} | {"cached_calls": 0, "cost_usd": 0.0}
    line = llm_usage_line({"roles": {"facets": local}, "total": total})
    assert "cost unknown (no price known for openai:m@http://127.0.0.1:9/v1)" in line and "$" not in line
    hosted = {**role, "backend": "anthropic:claude-3-5-haiku-latest", "price_known": True, "cost_usd": 0.5}
    line = llm_usage_line({"roles": {"facets": hosted, "naming": local}, "total": {**total, "cost_usd": 0.5}})
    assert "$0.5000 (no price known for openai:m@http://127.0.0.1:9/v1; not counted)" in line
    assert llm_usage_line({"roles": {"facets": hosted}, "total": {**total, "cost_usd": 0.5}}).endswith("3 out, $0.5000")


def test_help_texts_wrap_to_the_terminal_not_to_the_source():
    """Command docstrings broke their help mid-sentence wherever the source line ended."""
    result = cli("--help", env={"COLUMNS": "250"})
    assert result.returncode == 0
    for phrase in ("where do this week's conversations go?", "conversations without an account id.",
                   "search). A run with several hierarchies", "every hierarchy of the run (with a switcher)"):
        assert phrase in result.stdout, phrase


def test_run_summary_names_skipped_files_of_a_directory():
    """An empty file in an input directory was skipped with no word on the terminal (only in the manifest)."""
    from convoscope.cli import ingest_notes

    notes = ingest_notes({"skipped_files": [f"d/{i}.jsonl: file is empty" for i in range(5)], "duplicates": 2})
    assert notes[0] == ("skipped 5 files of the input holding no conversations: d/0.jsonl: file is empty; d/1.jsonl: file is empty; "
                        "d/2.jsonl: file is empty; and 2 more (manifest.json, stages.ingest.report)")
    assert notes[1] == "removed 2 exact duplicate conversations"
    assert ingest_notes({"skipped_files": [], "duplicates": 0}) == []


def test_run_summary_says_dp_counts_are_noisy():
    """A DP run of 1,500 conversations summarised as 'Done: 1,511 conversations' with no word of noise."""
    from convoscope.cli import release_counts

    agg = {"run": {"conversations": 1511, "accounts": 1503, "levels": 1, "privacy": "dp"},
           "clusters": [{"kind": "cluster"}, {"kind": "other"}], "withheld": {"clusters": 1, "conversations": 9}}
    assert release_counts(agg) == (" (noisy counts: differential privacy): 1,511 conversations, 1,503 accounts, 1 level, "
                                   "1 published cluster, 1 withheld (9 conversations in 'other').")
    agg["run"]["privacy"] = "thresholds"
    assert release_counts(agg).startswith(": 1,511 conversations")


def _all_artifacts_readable(run_dir: Path) -> None:
    for path in run_dir.iterdir():
        if path.name.endswith(".partial"):
            continue
        if path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".npy":
            np.load(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def test_a_run_killed_midway_resumes_to_the_same_result(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=80, accounts=40))
    args = ["--min-conversations", "5", "--min-accounts", "3", "--quiet"]
    victim = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "convoscope", "run", str(data), "--out", str(victim), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    manifest = victim / "manifest.json"
    while time.monotonic() < deadline:  # kill once clustering is done and the map (the slowest stage) is under way
        if manifest.exists() and "privacy" in manifest.read_text():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stages = json.loads(manifest.read_text())["stages"]
    assert "aggregates" not in stages  # it really died midway
    _all_artifacts_readable(victim)
    resumed = cli("run", str(data), "--out", str(victim), *args)
    assert resumed.returncode == 0, resumed.stderr
    clean = cli("run", str(data), "--out", str(tmp_path / "clean"), *args)
    assert clean.returncode == 0, clean.stderr
    a = json.loads((victim / "aggregates.json").read_text())
    b = json.loads((tmp_path / "clean" / "aggregates.json").read_text())
    assert a["clusters"] == b["clusters"] and a["withheld"] == b["withheld"]


def test_report_json_has_the_documented_fields(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", make_records(per_topic=40, accounts=30))
    run = cli("run", str(data), "--out", str(tmp_path / "run"), "--min-conversations", "5", "--min-accounts", "3", "--quiet")
    assert run.returncode == 0, run.stderr
    rep = json.loads(cli("report", str(tmp_path / "run"), "--json").stdout)
    assert {"facet", "levels", "clusters", "withheld"} <= rep.keys()
    for c in rep["clusters"]:
        assert {"id", "parent", "level", "name", "description", "size", "accounts", "published"} <= c.keys()
    text = cli("report", str(tmp_path / "run")).stdout
    assert "conversations" in text and rep["clusters"][0]["name"].split(",")[0] in text


def test_example_config_in_docs_is_valid():
    from convoscope.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "docs" / "config.example.toml")
    assert [f.name for f in cfg.facets.custom] == ["sentiment", "expertise"] and cfg.llm.max_cost_usd == 50.0
