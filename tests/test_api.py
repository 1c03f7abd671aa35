"""The Python API (docs/api.md): Pipeline / fit on every kind of input, Result views, injected components,
privacy of in-memory data, errors, and the documentation's example, executed."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pd = pytest.importorskip("pandas")

from convoscope import Config, Pipeline, Result, load_run  # noqa: E402
from convoscope.errors import ConfigError, InputError  # noqa: E402
from fakes.corpus import make_records, write_jsonl  # noqa: E402

SMALL = dict(min_accounts=3, min_conversations=5, conversations_per_cluster=15, seed=0, progress=False)
REPO = Path(__file__).resolve().parent.parent


class HashEmbedder:
    """Deterministic bag-of-words vectors; counts its calls."""

    def __init__(self, name: str = "test-hash-bow") -> None:
        self.name = name
        self.calls = 0
        self.texts = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), 128), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, zlib.crc32(word.encode()) % 127 + 1] += 1.0
        out[:, 0] = 0.01  # never an all-zero row
        return out


class CountingPCA:
    """A reducer: PCA, counting its calls."""

    def __init__(self) -> None:
        from sklearn.decomposition import PCA

        self.calls = 0
        self._pca = PCA(n_components=2, random_state=0)

    def fit_transform(self, vectors):
        self.calls += 1
        return self._pca.fit_transform(vectors)

    def __repr__(self) -> str:
        return "CountingPCA(n_components=2)"


def _fast(**extra):
    """Our pipeline with a fast embedder and reducer (the defaults are exercised by the docs test)."""
    from sklearn.decomposition import PCA

    return Pipeline(embedder=HashEmbedder(), reducer=PCA(n_components=2, random_state=0), **{**SMALL, **extra})


@pytest.fixture(scope="module")
def records():
    return make_records(per_topic=30, accounts=20)


@pytest.fixture(scope="module")
def from_records(records, tmp_path_factory):
    return _fast().fit(records, out=tmp_path_factory.mktemp("api") / "run")


def _key(result: Result) -> pd.DataFrame:
    return result.clusters.sort_values(["level", "id"]).reset_index(drop=True)


def test_path_records_dataframe_table_and_message_rows_give_the_same_clusters(records, from_records, tmp_path):
    path = write_jsonl(tmp_path / "convs.jsonl", records)
    expected = _key(from_records)
    assert (expected["kind"] == "cluster").sum() >= 4
    message_rows = pd.DataFrame([{"conversation_id": r["id"], "user": r["user"], "created_at": r["created_at"], "role": m["role"],
                                  "content": m["content"]} for r in records for m in r["messages"]])
    inputs = {"path": path, "str path": str(path), "generator": (dict(r) for r in records), "DataFrame": pd.DataFrame(records),
              "Table": pa.Table.from_pylist(records), "message rows": message_rows}
    for label, data in inputs.items():
        result = _fast().fit(data)
        pd.testing.assert_frame_equal(_key(result), expected, obj=label)
        assert result.assignments.sort_values("conv_id").reset_index(drop=True).equals(
            from_records.assignments.sort_values("conv_id").reset_index(drop=True)), label


def test_result_views(from_records):
    r = from_records
    clusters = r.clusters
    assert list(clusters.columns) == ["id", "level", "parent", "kind", "name", "description", "size", "accounts", "share"]
    run = r.aggregates["run"]
    assert clusters.loc[clusters["level"] == 0, "size"].sum() == run["conversations"] == len(r.assignments)
    h = r.hierarchy
    assert set(h["id"]) == set(clusters["id"]) and (h["depth"] == h["id"].map(clusters.set_index("id")["level"])).all()
    first = h.iloc[0]
    assert first["depth"] == 0 and first["path"] == first["name"]
    tree = r.hierarchy_tree()
    assert sum(c["size"] for c in tree["children"]) == tree["size"] == run["conversations"]
    published = set(clusters.loc[clusters["kind"] == "cluster", "id"])
    assignments = r.assignments
    assert list(assignments.columns) == ["conv_id"] + [f"level_{i}" for i in range(run["levels"])]
    assert set(assignments.drop(columns="conv_id").stack().dropna()) <= published
    text = r.report()
    assert "\x1b" not in text and f"{run['conversations']:,} conversations" in text
    assert r.report(as_json=True)["clusters"][0]["id"] == r.aggregates["clusters"][0]["id"]
    assert r.analyze("usage")["analysis"] == "usage"
    assert r.analyze("languages", min_language=1)["analysis"] == "languages"
    with pytest.raises(ValueError, match="unknown analysis"):
        r.analyze("nope")
    start, end = run["time_range"]
    split = r.compare(split_at=pd.Timestamp("2026-01-19").date())
    assert split["mode"] == "split" and split["clusters"]
    assert r.compare(r.run_dir.parent / "run")["mode"] == "runs"
    assert r.compare(load_run(r.run_dir))["mode"] == "runs"
    with pytest.raises(Exception, match="either"):
        r.compare()
    again = load_run(r.run_dir)
    pd.testing.assert_frame_equal(again.clusters, clusters)
    assert "Result" in repr(r) and r.facets == ["request"]
    r.aggregates["clusters"].clear()  # a copy: the Result is unchanged
    assert len(r.clusters) == len(clusters)


def test_explorer_written(from_records, tmp_path):
    path = from_records.explorer(tmp_path / "x.html")
    assert path == tmp_path / "x.html" and path.read_text(encoding="utf-8").startswith("<!")
    assert from_records.explorer() == from_records.run_dir / "explorer.html"


def _page_conversations(page: Path) -> int:
    data = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page.read_text(encoding="utf-8"), re.S)
    return json.loads(data.group(1))["run"]["conversations"]


def test_rerun_rewrites_an_explorer_page_of_the_previous_data(records, tmp_path):
    """A page written by `explore` and a rerun on other data into the same directory: the page shows the new
    release (it kept the old one, beside the new aggregates, before)."""
    out = tmp_path / "run"
    first = _fast().fit(records, out=out)
    page = first.explorer()
    assert _page_conversations(page) == first.aggregates["run"]["conversations"]
    second = _fast().fit(records[: len(records) // 2], out=out)
    assert second.aggregates["run"]["conversations"] < first.aggregates["run"]["conversations"]
    assert _page_conversations(page) == second.aggregates["run"]["conversations"]
    before = page.stat().st_mtime_ns
    _fast().fit(records[: len(records) // 2], out=out)  # nothing changed: the page is left alone
    assert page.stat().st_mtime_ns == before


def test_a_run_of_other_input_into_a_run_directory_says_it_replaced_it(records, tmp_path):
    from rich.console import Console

    first, second = write_jsonl(tmp_path / "a.jsonl", records), write_jsonl(tmp_path / "b.jsonl", records[:60])
    console = Console(record=True, width=300)
    _fast(console=console).fit(first, out=tmp_path / "run")
    _fast(console=console).fit(first, out=tmp_path / "run")  # a resume: no note
    assert "held a run of" not in console.export_text()
    _fast(console=console).fit(second, out=tmp_path / "run")
    assert f"held a run of {first.resolve()}; it now holds this run of {second.resolve()}" in console.export_text()


def test_injected_components_are_used_and_fingerprinted(records, tmp_path):
    from sklearn.cluster import KMeans

    embedder, reducer = HashEmbedder("counting-embedder"), CountingPCA()
    out = tmp_path / "run"
    result = Pipeline(embedder=embedder, clusterer=KMeans(n_clusters=4, n_init=3, random_state=0), reducer=reducer,
                      cache=False, **SMALL).fit(records, out=out)
    manifest = result.store.manifest
    # the embed stage encodes each distinct text once; the naming stage adds its candidate phrases (MMR)
    assert embedder.calls > 0 and 0 < manifest["stages"]["embed"]["computed"] <= len(records) and reducer.calls == 1
    assert embedder.texts > manifest["stages"]["embed"]["computed"]
    assert manifest["stages"]["cluster"]["k"] == 4 and "KMeans" in manifest["stages"]["cluster"]["rule"]
    assert manifest["stages"]["embed"]["model"] == "counting-embedder"
    assert manifest["components"]["embedder"] == "counting-embedder" and "KMeans" in manifest["components"]["clusterer"]
    assert result.aggregates["run"]["embedding_model"] == "counting-embedder"
    # the same components again: every stage is skipped
    calls = embedder.calls
    Pipeline(embedder=embedder, clusterer=KMeans(n_clusters=4, n_init=3, random_state=0), reducer=reducer, cache=False, **SMALL).fit(records, out=out)
    assert embedder.calls == calls and reducer.calls == 1
    # another clusterer: clustering (and what follows) recomputes, the embeddings do not
    again = Pipeline(embedder=embedder, clusterer=KMeans(n_clusters=6, n_init=3, random_state=0), reducer=reducer, cache=False,
                     **SMALL).fit(records, out=out)
    embed_stage = manifest["stages"]["embed"]
    assert again.store.manifest["stages"]["embed"] == embed_stage and again.store.manifest["stages"]["cluster"]["k"] == 6
    assert embedder.calls > calls  # only for naming's phrases
    # another embedder name: embeddings recompute
    other = HashEmbedder("counting-embedder-2")
    recomputed = Pipeline(embedder=other, reducer=reducer, cache=False, **SMALL).fit(records, out=out)
    assert recomputed.store.manifest["stages"]["embed"]["model"] == "counting-embedder-2"
    assert recomputed.store.manifest["stages"]["embed"]["computed"] == embed_stage["computed"]


class TopicNamer:
    """A namer: names each cluster by its most common content word; the first cluster gets a private
    person's name (which the privacy checks must withhold). Records what it was shown."""

    def __init__(self) -> None:
        self.samples: list[list[str]] = []

    def name_clusters(self, samples):
        self.samples = samples
        out = []
        for i, texts in enumerate(samples):
            words = [w.strip("?.,!").lower() for t in texts for w in t.split() if len(w) > 5]
            top = max(set(words), key=words.count) if words else "misc"
            out.append(("Letters to Zebulon Quargmire", "About Mr Quargmire.") if i == 0 else (f"Questions about {top}", f"Requests about {top}."))
        return out


def test_injected_namer_is_checked_like_an_llm(records, tmp_path):
    from sklearn.decomposition import PCA

    namer = TopicNamer()
    result = Pipeline(embedder=HashEmbedder(), reducer=PCA(n_components=2, random_state=0), namer=namer, **SMALL).fit(records, out=tmp_path / "run")
    assert result.store.manifest["stages"]["name"]["mode"] == "custom" and "namer" in result.store.manifest["components"]
    base = result.clusters[result.clusters["level"] == result.clusters["level"].max()]
    assert any(name.startswith("Questions about") for name in base["name"])  # its names are used
    assert "Quargmire" not in result.report() and "Quargmire" not in json.dumps(result.aggregates)  # and checked:
    b0 = next(c for c in result.store.read_table("clusters").to_pylist() if c["id"] == "b0")
    assert b0["size"] >= 5 and "person-like name" in (b0["withheld_reason"] or "")  # withheld for its words, not its size
    # samples take at most max_conversations_per_account texts of any one account, like the LLM's
    assert namer.samples and all(len(s) <= 50 for s in namer.samples)
    with pytest.raises(TypeError, match="name_clusters"):
        Pipeline(namer=object())


def test_noise_labels_join_the_nearest_cluster(records):
    from sklearn.cluster import KMeans

    class NoisyKMeans:
        def fit_predict(self, vectors):
            labels = KMeans(n_clusters=4, n_init=3, random_state=0).fit_predict(vectors)
            labels[::7] = -1
            return labels

    result = _fast(clusterer=NoisyKMeans()).fit(records)
    stage = result.store.manifest["stages"]["cluster"]
    n = result.aggregates["run"]["conversations"]  # exact duplicates removed
    assert stage["k"] == 4 and stage["noise_reassigned"] == len(range(0, n, 7))
    assert result.clusters.loc[result.clusters["level"] == 0, "size"].sum() == n

    class AllNoise:
        def fit_predict(self, vectors):
            return np.full(len(vectors), -1)

    with pytest.raises(ValueError, match="noise"):
        _fast(clusterer=AllNoise()).fit(records)


def test_withheld_clusters_never_reach_the_release(records):
    rare = [{"id": f"rare-{i}", "user": "the-only-account", "created_at": "2026-01-10T10:00:00+00:00",
             "messages": [{"role": "user", "content": f"zebra quokka narwhal pangolin axolotl habitat question {i}"}]} for i in range(12)]
    result = _fast().fit(records + rare)
    internal = result.store.read_table("clusters").to_pylist()
    withheld = [c for c in internal if c["kind"] == "cluster" and not c["published"]]
    assert withheld, "the planted single-account topic should be withheld"
    withheld_ids = {c["id"] for c in withheld}
    withheld_names = {c["name"] for c in withheld}
    clusters = result.clusters
    assert not withheld_ids & set(clusters["id"]) and not withheld_names & set(clusters["name"])
    assert not withheld_ids & set(result.hierarchy["id"])
    assert not withheld_ids & set(result.assignments.drop(columns="conv_id").stack().dropna())
    report = result.report() + json.dumps(result.report(as_json=True)) + json.dumps(result.aggregates)
    for name in withheld_names:
        assert name not in report
    rare_rows = result.assignments[result.assignments["conv_id"].str.startswith("rare-")]
    assert rare_rows[f"level_{result.aggregates['run']['levels'] - 1}"].isna().all()


def _strings_in_run_dir(root: Path) -> str:
    """Every file of the run directory as searchable text (Parquet decoded, so compression hides nothing)."""
    parts = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        else:
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def test_in_memory_raw_text_never_written(tmp_path):
    records = make_records(per_topic=25, accounts=20)
    for i, r in enumerate(records):  # a secret only this conversation holds, in the user's and the assistant's text
        r["messages"][0]["content"] += f" my code is sekrit{i:04d}x"
        r["messages"][1]["content"] += f" noted sekrit{i:04d}y"
    for data, out in ((records, tmp_path / "records"), (pd.DataFrame(records), tmp_path / "frame")):
        result = _fast().fit(data, out=out)
        result.explorer()
        blob = _strings_in_run_dir(out)
        assert "sekrit" not in blob
        for r in records[:50]:
            assert r["messages"][0]["content"] not in blob and r["messages"][1]["content"] not in blob
    # the scan does find raw text when it is there (privacy.include_raw_text)
    _fast(include_raw_text=True).fit(records, out=tmp_path / "raw")
    assert "sekrit0000x" in _strings_in_run_dir(tmp_path / "raw")


def test_settings_keywords_and_config():
    pipe = Pipeline(llm=None, min_accounts=7, levels=2, seed=3, hierarchies="request", cache=False, settings={"map.n_neighbors": 9})
    c = pipe.config
    assert (c.privacy.min_accounts, c.hierarchy.levels, c.seed, c.map.n_neighbors, c.llm.facets) == (7, 2, 3, 9, "none")
    assert not c.llm.cache and not c.embedding.cache
    assert Pipeline(config=Config(seed=5), min_accounts=4).config.seed == 5
    assert Pipeline(config={"privacy": {"min_accounts": 9}}).config.privacy.min_accounts == 9


def test_config_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("seed = 11\n[privacy]\nmin_accounts = 8\n", encoding="utf-8")
    c = Pipeline(config=toml, min_accounts=6).config
    assert (c.seed, c.privacy.min_accounts) == (11, 6)


def test_bad_inputs_give_clear_errors(records):
    with pytest.raises(TypeError, match=r"'min_acounts'.*accepted: .*min_accounts"):
        Pipeline(min_acounts=3)
    with pytest.raises(ConfigError, match="min_accounts"):
        Pipeline(min_accounts=0)
    with pytest.raises(TypeError, match="record 1 is a str, not a dict"):
        _fast().fit([records[0], "just text"])
    with pytest.raises(TypeError, match="cannot read conversations from a dict"):
        _fast().fit(records[0])
    with pytest.raises(InputError, match="empty"):
        _fast().fit([])
    with pytest.raises(InputError, match="no rows"):
        _fast().fit(pd.DataFrame({"text": []}))
    with pytest.raises(InputError, match="no such file"):
        _fast().fit("no/such/file.jsonl")
    with pytest.raises(InputError, match=r"records: index 1: .*unknown record shape"):
        _fast().fit([records[0], {"body": "hello"}])
    with pytest.raises(InputError, match="DataFrame"):
        _fast().fit(pd.DataFrame({"body": ["a", "b"]}))
    with pytest.raises(TypeError, match="embedder .*name"):
        Pipeline(embedder=object())
    with pytest.raises(TypeError, match="fit_predict"):
        Pipeline(clusterer=object())
    with pytest.raises(TypeError, match="fit_transform"):
        Pipeline(reducer=object())
    with pytest.raises(Exception, match="run"):
        load_run(REPO / "docs")


def test_skip_invalid_in_memory(records):
    result = _fast(skip_invalid=True).fit([*records, {"body": "x"}, {"messages": []}])
    report = result.store.manifest["stages"]["ingest"]["report"]
    assert report["invalid"] == 2 and report["conversations"] + report["duplicates"] == len(records)


def _python_blocks(markdown: str) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)
    return [b for b in blocks if "not run here" not in b.splitlines()[0]]


def test_docs_api_example_runs(tmp_path, monkeypatch):
    """docs/api.md's code blocks, in order, in one namespace, as a notebook would run them."""
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks((REPO / "docs" / "api.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    assert (tmp_path / "notebook-explorer.html").exists() and (tmp_path / "runs" / "notebook" / "manifest.json").exists()
    assert isinstance(namespace["other"], Result) and namespace["other"].store.manifest["stages"]["embed"]["model"] == "hashing-1024"
