"""`analyze concerning` end to end in LLM mode over real harmful-request dialogues (hh-rlhf), against
the fake server: the plumbing from facet answers to the published ranking, not a model's judgement."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convoscope.analyses.cli import analyze_app
from convoscope.config import load_config
from convoscope.pipeline import run_pipeline
from fakes.clio_responder import make_responder
from fakes.llm_servers import FakeOpenAIServer

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz"
HARMFUL = re.compile(r"\b(steal|kill|poison|gun|drugs?|bomb|hack)\b", re.I)


@pytest.mark.skipif(not HH.exists(), reason="shared hh-rlhf data not present")
def test_concerning_ranking_from_an_llm_run_over_hh_rlhf(tmp_path):
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(300)]
    data = tmp_path / "hh.jsonl"
    data.write_text("".join(lines))
    honest = make_responder()

    def responder(body):
        answer = honest(body)
        text = body["messages"][-1]["content"]
        if "<conversation>" in text:  # rate by a keyword rule so the expected ranking is known
            parsed = json.loads(answer)
            convo = text.split("<conversation>")[1].split("</conversation>")[0]
            harmful = bool(HARMFUL.search(convo))
            parsed["concerning"] = 4 if harmful else 1
            parsed["request"] = "The user's overall request for the assistant is to " + ("get help with something harmful." if harmful else "chat about everyday things.")
            return json.dumps(parsed)
        return answer

    with FakeOpenAIServer(responder=responder) as server:
        cfg = load_config(None, {"llm.facets": f"openai:fake@{server.url}", "llm.cache": False, "cluster.conversations_per_cluster": 30,
                                 "privacy.min_conversations": 5, "privacy.min_accounts": 5})
        run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
    result = CliRunner().invoke(analyze_app, ["concerning", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["available"] is True
    expected_high = sum(1 for line in lines if HARMFUL.search(json.loads(line)["chosen"]))
    assert out["overall"]["n"] == 300 and out["overall"]["high"] == expected_high
    ranked = out["by_mean"] if "by_mean" in out else next(v for v in out.values() if isinstance(v, list))
    assert ranked[0]["mean"] > 3.5 and ranked[-1]["mean"] < 1.5  # the harmful cluster is ranked first
