"""Attack 7 of issue 11, secrets at rest: nothing in a run directory or a cache lets its holder reverse
account hashes or test whether a guessed text was processed, and every file we write is private."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from convoscope import secrets_key
from convoscope.config import load_config
from convoscope.context import RunContext
from convoscope.errors import ConfigError
from convoscope.secrets_key import ENV_KEY, ENV_KEY_FILE, key_file_path, key_id, secret_key
from convoscope.stages.ingest import run_ingest
from convoscope.store import MANIFEST, RunStore
from fakes.corpus import make_records, write_jsonl

KEY_A = "a" * 24 + "0123456789abcdef" * 2
KEY_B = "b" * 24 + "fedcba9876543210" * 2
ACCOUNTS = [f"acct-{i}" for i in range(12)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask():
    """umask 000: a file or directory is private only because we made it so, not by the default umask."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def input_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "convs.jsonl", make_records(per_topic=6, accounts=len(ACCOUNTS)))


def ingest(input_path: Path, run_dir: Path) -> tuple[RunStore, str]:
    store = RunStore(run_dir, create=True)
    ctx = RunContext(config=load_config(None, {}), store=store, input_path=input_path, show_progress=False)
    return store, run_ingest(ctx)


def stored_accounts(run_dir: Path) -> list[str]:
    return pq.read_table(run_dir / "conversations.parquet", columns=["account"]).column("account").to_pylist()


# -- what an attacker holding only the run directory can try ------------------------------------------


def _strings(obj) -> set[str]:
    if isinstance(obj, dict):
        return {s for k, v in obj.items() for s in {str(k), *_strings(v)}}
    if isinstance(obj, list):
        return {s for v in obj for s in _strings(v)}
    return {str(obj)} if obj is not None else set()


def _candidate_digests(name: str, secret: str) -> list[str]:
    """Every hashing scheme an attacker might try for account `name` with `secret` from the run."""
    n, s = name.encode(), secret.encode()
    digests = [hashlib.new(algo, n).hexdigest() for algo in ("sha256", "sha1", "md5", "blake2b")]
    digests += [
        hashlib.blake2b(n, digest_size=12, key=s[:64]).hexdigest(),  # the scheme before the key
        hashlib.blake2b(n, key=s[:64]).hexdigest(),
        hmac.new(s, n, hashlib.sha256).hexdigest(),
        hmac.new(s, b"convoscope account\0" + n, hashlib.sha256).hexdigest(),  # today's scheme, guessed key
        hashlib.sha256(s + n).hexdigest(),
        hashlib.sha256(n + s).hexdigest(),
    ]
    return digests


def dictionary_attack(run_dir: Path, candidates: list[str]) -> set[str]:
    """Candidate account names whose hash, under any scheme keyed by anything in the run, is stored."""
    hashes = set(stored_accounts(run_dir))
    length = len(next(iter(hashes)))
    secrets_found = {""} | _strings(json.loads((run_dir / MANIFEST).read_text()))
    recovered = set()
    for name in candidates:
        for secret in secrets_found:
            if any(d[:length] in hashes for d in _candidate_digests(name, secret)):
                recovered.add(name)
    return recovered


def test_dictionary_attack_reverses_a_salt_stored_in_the_run(tmp_path):
    """The attack works against the old layout (salt in manifest.json), so its failure below means something."""
    run = tmp_path / "old-run"
    run.mkdir()
    salt = "0f" * 16
    (run / MANIFEST).write_text(json.dumps({"account_salt": salt, "stages": {}}))
    hashed = [hashlib.blake2b(a.encode(), digest_size=12, key=salt.encode()).hexdigest() for a in ACCOUNTS]
    pq.write_table(pa.table({"account": hashed}), run / "conversations.parquet")
    assert dictionary_attack(run, ACCOUNTS + ["someone-else"]) == set(ACCOUNTS)


def test_dictionary_attack_on_a_run_directory_fails(tmp_path, input_file):
    store, _ = ingest(input_file, tmp_path / "run")
    assert len(set(stored_accounts(store.root))) > len(ACCOUNTS) // 2  # the attack has targets
    assert dictionary_attack(store.root, ACCOUNTS) == set()


def test_run_directory_holds_no_key_and_no_salt(tmp_path, input_file):
    store, _ = ingest(input_file, tmp_path / "run")
    manifest = json.loads((store.root / MANIFEST).read_text())
    assert "account_salt" not in manifest
    assert manifest["account_key_id"] == key_id() and len(manifest["account_key_id"]) == 16
    assert_no_secret_in(store.root, secret_key().decode())


def assert_no_secret_in(run_dir: Path, key: str) -> None:
    """Every file, parquet decoded, contains neither the key nor any field named like a salt."""
    for path in run_dir.rglob("*"):
        if not path.is_file():
            continue
        text = str(pq.read_table(path).to_pylist()) if path.suffix == ".parquet" else path.read_bytes().decode("latin-1")
        assert key not in text, path
        assert key[:16] not in text, path
        assert "salt" not in text.lower(), path


def test_old_runs_drop_their_salt_and_re_ingest(tmp_path, input_file):
    store, fp = ingest(input_file, tmp_path / "run")
    store.update_manifest(account_salt="0f" * 16)
    store.update_manifest(stages={**store.manifest["stages"], "ingest": {**store.manifest["stages"]["ingest"], "fingerprint": "old"}})
    again, fp2 = ingest(input_file, tmp_path / "run")
    assert fp2 == fp and "account_salt" not in json.loads((again.root / MANIFEST).read_text())


def test_rotating_the_key_changes_hashes_and_the_ingest_fingerprint(tmp_path, input_file, monkeypatch):
    monkeypatch.setenv(ENV_KEY, KEY_A)
    store, fp_a = ingest(input_file, tmp_path / "run")
    hashes_a, id_a = stored_accounts(store.root), store.manifest["account_key_id"]
    assert ingest(input_file, tmp_path / "run")[1] == fp_a  # same key: the stage is reused
    monkeypatch.setenv(ENV_KEY, KEY_B)
    store, fp_b = ingest(input_file, tmp_path / "run")
    hashes_b = stored_accounts(store.root)
    assert fp_b != fp_a and store.manifest["account_key_id"] != id_a
    assert set(hashes_a).isdisjoint(hashes_b)
    # the same accounts still group the same conversations: only the labels changed
    assert len(set(hashes_a)) == len(set(hashes_b)) and [hashes_a.index(h) for h in hashes_a] == [hashes_b.index(h) for h in hashes_b]


# -- the key --------------------------------------------------------------------------------------------


def test_key_file_is_created_private_and_reused(tmp_path, monkeypatch, permissive_umask):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = key_file_path()
    assert path == tmp_path / "config" / "convoscope" / "secret.key"
    key = secret_key()
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert len(key) == 64 and int(key, 16) >= 0
    assert secret_key() == key and key_id() == key_id(key)
    assert key.decode() not in key_id() and len(key_id()) == 16
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary file left behind


def test_key_file_location_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "team" / "k"))
    secret_key()
    assert key_file_path() == tmp_path / "team" / "k" and mode(tmp_path / "team" / "k") == 0o600


def test_refuses_a_key_file_others_can_read(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "k"))
    secret_key()
    os.chmod(tmp_path / "k", 0o640)
    with pytest.raises(ConfigError, match=r"readable .* by other users \(mode 0640\).*chmod 600"):
        secret_key()


def test_refuses_a_short_key(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY, "hunter2")
    with pytest.raises(ConfigError, match=r"CONVOSCOPE_SECRET_KEY is too short \(7 characters; at least 32"):
        secret_key()
    monkeypatch.delenv(ENV_KEY)
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "k"))
    (tmp_path / "k").write_text("short\n")
    os.chmod(tmp_path / "k", 0o600)
    with pytest.raises(ConfigError, match="too short"):
        secret_key()


def test_environment_variable_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "k"))
    monkeypatch.setenv(ENV_KEY, f"  {KEY_A}\n")
    assert secret_key() == KEY_A.encode()
    assert not (tmp_path / "k").exists()  # no file is created when the key comes from the environment
    # the file's text used as the variable gives the same key: how a team shares one
    monkeypatch.delenv(ENV_KEY)
    from_file = secret_key()
    monkeypatch.setenv(ENV_KEY, (tmp_path / "k").read_text())
    assert secret_key() == from_file


def test_a_replaced_key_file_is_noticed(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "k"))
    first = secret_key()
    (tmp_path / "k").unlink()
    assert secret_key() != first


def test_concurrent_first_use_agrees_on_one_key(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "cfg" / "k"))
    script = "from convoscope.secrets_key import secret_key; print(secret_key().decode())"
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1 and keys == {(tmp_path / "cfg" / "k").read_text().strip()}


# -- caches ----------------------------------------------------------------------------------------------


def test_llm_cache_is_private_and_keyed(tmp_path, monkeypatch, permissive_umask):
    from convoscope.llm.base import ChatMessage, LLMRequest, Usage
    from convoscope.llm.cache import CACHE_FILE, ResponseCache, cache_key

    monkeypatch.setenv(ENV_KEY, KEY_A)
    cache = ResponseCache(tmp_path / "cache")
    request = LLMRequest(messages=(ChatMessage("user", "my landlord Quargmire"),))
    key = cache_key("openai", "m", request)
    cache.put(key, "answer", None, Usage(1, 2))
    assert cache.get(key).text == "answer"
    db = tmp_path / "cache" / CACHE_FILE
    assert mode(tmp_path / "cache") == 0o700
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    assert all(p.exists() and mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files if p.exists()}
    # the key is not a plain hash of the request: holding the file does not let anyone test a guess
    payload = {"v": 3, "backend": "openai", "model": "m", "messages": [["user", "my landlord Quargmire"]], "system": request.system,
               "temperature": request.temperature, "max_tokens": request.max_tokens, "schema": request.json_schema}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    assert key not in {hashlib.sha256(blob.replace(b'"v":3', f'"v":{v}'.encode())).hexdigest() for v in (1, 2, 3)}
    monkeypatch.setenv(ENV_KEY, KEY_B)
    assert cache_key("openai", "m", request) != key
    cache.close()


def test_vector_cache_is_private_and_keyed(tmp_path, monkeypatch, permissive_umask):
    from convoscope.embedders import VectorCache

    monkeypatch.setenv(ENV_KEY, KEY_A)
    cache = VectorCache(tmp_path / "cache", "model-x")
    cache.put_many(["a guessed text"], np.ones((1, 4), dtype=np.float32))
    assert cache.get_many(["a guessed text", "other"])[0].tolist() == [1.0] * 4
    db = tmp_path / "cache" / "vectors.sqlite"
    assert mode(tmp_path / "cache") == 0o700
    assert all(mode(p) == 0o600 for p in tmp_path.joinpath("cache").iterdir())
    keys = [bytes(k) for (k,) in sqlite3.connect(db).execute("SELECT key FROM vectors")]
    assert keys and hashlib.sha256(b"model-x\0a guessed text").digest() not in keys
    cache.close()
    monkeypatch.setenv(ENV_KEY, KEY_B)  # another key: entries made with the old one are not found
    assert VectorCache(tmp_path / "cache", "model-x").get_many(["a guessed text"]) == [None]


def test_caches_from_before_the_key_are_emptied_and_made_private(tmp_path):
    """Old entries sit under plain sha256 keys in 0644 files: they are deleted, not merely missed."""
    from convoscope.embedders import VectorCache
    from convoscope.llm.cache import CACHE_FILE, ResponseCache

    tmp_path.joinpath("cache").mkdir()
    old_llm, old_vectors = tmp_path / "cache" / CACHE_FILE, tmp_path / "cache" / "vectors.sqlite"
    with sqlite3.connect(old_llm) as db:
        db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, parsed TEXT,"
                   " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, created REAL NOT NULL)")
        db.execute("INSERT INTO responses VALUES (?, 'old answer', NULL, 1, 1, 0)", (hashlib.sha256(b"x").hexdigest(),))
    with sqlite3.connect(old_vectors) as db:
        db.execute("CREATE TABLE vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        db.execute("INSERT INTO vectors VALUES (?, ?)", (hashlib.sha256(b"m\0x").digest(), b"\0" * 16))
    for path in (old_llm, old_vectors):
        os.chmod(path, 0o644)
    ResponseCache(tmp_path / "cache").close()
    VectorCache(tmp_path / "cache", "m").close()
    for path, table in ((old_llm, "responses"), (old_vectors, "vectors")):
        assert mode(path) == 0o600
        assert sqlite3.connect(path).execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
        assert b"old answer" not in path.read_bytes()


# -- run directories ------------------------------------------------------------------------------------


def test_run_directory_is_private(tmp_path, permissive_umask):
    parent = tmp_path / "users-dir"
    parent.mkdir(mode=0o755)
    store = RunStore(parent / "runs" / "run1", create=True)
    store.update_manifest(note="x")
    store.write_table("conversations", pa.table({"a": [1]}))
    store.write_array("embeddings", np.zeros(3, dtype=np.float32))
    store.write_json("names", {"a": 1})
    facet = store.facet_store("task", create=True)
    facet.write_json("names", {"b": 2})
    assert mode(parent) == 0o755  # the user's existing directory is left alone
    assert mode(parent / "runs") == 0o700 and mode(store.root) == 0o700
    dirs = [p for p in store.root.rglob("*") if p.is_dir()]
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert dirs and all(mode(d) == 0o700 for d in dirs)
    assert len(files) == 6 and all(mode(f) == 0o600 for f in files), {str(f): oct(mode(f)) for f in files}


def test_an_existing_run_directory_keeps_its_mode(tmp_path):
    run = tmp_path / "shared-run"
    run.mkdir(mode=0o750)
    os.chmod(run, 0o750)
    RunStore(run, create=True).update_manifest(note="x")
    assert mode(run) == 0o750 and mode(run / MANIFEST) == 0o600


# -- the whole pipeline ---------------------------------------------------------------------------------


def test_full_run_directory_is_private_and_holds_no_secret(tmp_path, input_file, monkeypatch):
    from convoscope.pipeline import run_pipeline

    monkeypatch.setenv(ENV_KEY, KEY_A)
    cfg = load_config(None, {"cluster.conversations_per_cluster": 6, "privacy.min_conversations": 3, "privacy.min_accounts": 2})
    store = run_pipeline(input_file, tmp_path / "run", cfg, show_progress=False)
    assert_no_secret_in(store.root, KEY_A)
    assert dictionary_attack(store.root, ACCOUNTS) == set()
    for path in store.root.rglob("*"):  # nor any account id in the clear
        if path.suffix in (".json", ".parquet"):
            text = str(pq.read_table(path).to_pylist()) if path.suffix == ".parquet" else path.read_text()
            assert "acct-" not in text, path
    assert mode(store.root) == 0o700
    loose = {str(p.relative_to(store.root)): oct(mode(p)) for p in store.root.rglob("*") if mode(p) & 0o077}
    assert not loose


def test_key_file_without_hard_links(tmp_path, monkeypatch):
    """Filesystems without hard links fall back to an exclusive create."""
    def no_links(*_):
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(secrets_key.os, "link", no_links)
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "k"))
    key = secret_key()
    assert len(key) == 64 and mode(tmp_path / "k") == 0o600 and [p.name for p in tmp_path.iterdir()] == ["k"]
