"""Settings errors are found when the settings load, before any stage runs, and say what to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from convoscope.config import EMBEDDING_MODELS, load_config
from convoscope.errors import ConfigError


def cli(*args):
    return subprocess.run([sys.executable, "-m", "convoscope", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("model", ["foo", "st:", "openai:", "USE"])
def test_an_unknown_embedding_model_is_refused_naming_the_known_ones(model):
    with pytest.raises(ConfigError, match=f"unknown embedding model '{model}'.*use-multilingual.*multilingual-e5-small.*st:NAME_OR_PATH"):
        load_config(None, {"embedding.model": model})


@pytest.mark.parametrize("model", [*EMBEDDING_MODELS, "st:sentence-transformers/all-MiniLM-L6-v2", "openai:text-embedding-3-small@http://localhost:1"])
def test_every_model_make_embedder_takes_is_accepted(model):
    assert load_config(None, {"embedding.model": model}).embedding.model == model


def test_run_with_an_unknown_embedding_model_stops_before_reading_the_input(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "user": f"u{i}", "text": f"question {i}"}) + "\n" for i in range(20)))
    result = cli("run", data, "--out", tmp_path / "run", "--embedding", "foo", "--quiet")
    assert result.returncode != 0
    assert "unknown embedding model 'foo'" in result.stderr and "use-multilingual" in result.stderr
    assert "Reading conversations" not in result.stderr and not (tmp_path / "run").exists()  # no stage ran, no run directory


def test_an_unknown_setting_in_a_config_file_names_section_key_and_file(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[embedding]\nmodle = "minilm"\n\n[privacy]\nmin_accounts = 5\n\n[embeding]\nbatch_size = 8\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"unknown setting [embedding] modle in {path} (did you mean 'model'?)" in message
    assert f"unknown section [embeding] in {path} (did you mean 'embedding'?)" in message
    assert "convoscope config --show" in message and "Extra inputs" not in message
    with pytest.raises(ConfigError, match=r"unknown setting \[privacy\] min_acounts in --set \(did you mean 'min_accounts'\?\)"):
        load_config(None, {"privacy.min_acounts": 3})
    result = cli("config", "--config", path)  # the CLI prints it as it is
    assert result.returncode != 0 and f"unknown setting [embedding] modle in {path}" in " ".join(result.stderr.split())


def test_config_show_the_error_points_to_exists():
    result = cli("config", "--show")
    assert result.returncode == 0 and "[embedding]" in result.stdout


def test_every_embedding_name_the_settings_accept_is_one_make_embedder_knows():
    from convoscope.embedders import make_embedder

    for name in EMBEDDING_MODELS:
        try:
            make_embedder(name)
        except ConfigError as exc:  # an optional package missing is fine; an unknown name is not
            assert "unknown embedding model" not in str(exc), name
        except ImportError:
            pass
    with pytest.raises(ConfigError, match="unknown embedding model 'nope'"):
        make_embedder("nope")
