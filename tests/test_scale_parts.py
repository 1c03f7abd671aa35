"""The block-wise parts that let one machine take a million conversations (issue 12 part 1): the
memory-mapped array writer, k-means fitted on a sample and assigned in blocks, the map's inverted-file
neighbour search, and the embed stage's batches (in this process and in worker processes)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from convoscope.kmeans import assign_blocks, kmeans, kmeans_on_sample
from convoscope.neighbours import CellIndex, cosine_knn
from convoscope.stages.embed import embed_texts
from convoscope.store import RunStore


def _blobs(n: int, centres: int, dims: int = 32, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `centres` random unit directions, and each one's centre."""
    rng = np.random.default_rng(seed)
    middles = rng.normal(size=(centres, dims))
    middles /= np.linalg.norm(middles, axis=1, keepdims=True)
    truth = rng.integers(0, centres, size=n)
    points = middles[truth] + spread * rng.normal(size=(n, dims)) / np.sqrt(dims)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), truth


def test_array_writer_writes_a_readable_npy_block_by_block(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    data = np.arange(30, dtype=np.float32).reshape(10, 3)
    with store.array_writer("vectors", (10, 3), np.float16) as out:
        for start in range(0, 10, 4):
            out[start:start + 4] = data[start:start + 4]
    back = store.read_array("vectors")
    assert isinstance(back, np.memmap) and back.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(back, dtype=np.float32), data)


def test_array_writer_leaves_nothing_when_the_writing_fails(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    with pytest.raises(ValueError, match="model failed"):
        with store.array_writer("vectors", (10, 3), np.float16) as out:
            out[:4] = 1.0
            raise ValueError("model failed")
    assert not store.has("array:vectors")
    assert not list((tmp_path / "run").glob("*vectors*"))  # no partial file either


def test_assign_blocks_is_the_nearest_centroid_for_a_float16_memory_map(tmp_path):
    vectors, _ = _blobs(5000, 20)
    centroids = kmeans(vectors, 20, seed=0)[1]
    path = tmp_path / "v.npy"
    np.save(path, vectors.astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    labels = assign_blocks(mapped, centroids, block=777)  # blocks that do not divide the rows
    expected = np.argmax(mapped.astype(np.float32) @ centroids.T, axis=1)
    np.testing.assert_array_equal(labels, expected)


def test_kmeans_on_sample_is_kmeans_up_to_the_sample_size():
    vectors, _ = _blobs(3000, 10)
    labels, centroids = kmeans_on_sample(vectors, 10, seed=3, fit_rows=3000)
    want_labels, want_centroids = kmeans(vectors, 10, seed=3)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(centroids, want_centroids)


def test_kmeans_on_sample_recovers_clusters_deterministically_with_every_label_used():
    vectors, truth = _blobs(20_000, 40, seed=1)
    mapped = vectors.astype(np.float16)
    labels, centroids = kmeans_on_sample(mapped, 40, seed=5, fit_rows=4000)
    again, again_centroids = kmeans_on_sample(mapped, 40, seed=5, fit_rows=4000)
    np.testing.assert_array_equal(labels, again)
    np.testing.assert_array_equal(centroids, again_centroids)
    assert set(np.unique(labels)) == set(range(len(centroids)))
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    # every row is at its nearest centroid (what `assign` relies on for a stored conversation)
    np.testing.assert_array_equal(labels, assign_blocks(mapped, centroids))
    full_labels, _ = kmeans(vectors, 40, seed=5)
    sampled_nmi = normalized_mutual_info_score(truth, labels)
    assert sampled_nmi > 0.9
    assert sampled_nmi >= normalized_mutual_info_score(truth, full_labels) - 0.02


def test_cell_index_finds_nearly_all_exact_neighbours_deterministically():
    reference, _ = _blobs(5000, 50, seed=2, spread=0.6)
    queries, _ = _blobs(3000, 50, seed=2, spread=0.6)
    index = CellIndex(reference, cells=50, probe=10, seed=0)
    found, distances = index.search(queries, 15)
    exact, exact_distances = cosine_knn(queries, reference, 15)
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(found, exact)])
    assert recall > 0.9
    assert np.all(np.diff(distances, axis=1) >= 0)  # nearest first
    assert np.all(distances[:, 0] >= exact_distances[:, 0] - 1e-6)  # never nearer than the truth
    again = CellIndex(reference, cells=50, probe=10, seed=0).search(queries, 15)
    np.testing.assert_array_equal(found, again[0])


class _CountingEmbedder:
    name = "counting"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded.extend(texts)
        rng = np.random.default_rng([sum(map(ord, t)) for t in texts])
        vectors = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_embed_texts_encodes_each_distinct_text_once_in_order():
    embedder = _CountingEmbedder()
    vectors, computed = embed_texts(embedder, ["a", "b", "a", "c", "b"])
    assert computed == 3 and embedder.encoded == ["a", "b", "c"]
    assert vectors.shape == (5, 8) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[1], vectors[4])
    assert not np.array_equal(vectors[0], vectors[1])


@pytest.mark.slow  # starts two worker processes that each load the USE model
def test_pooled_embedding_matches_this_process(tmp_path, monkeypatch):
    from convoscope.config import load_config
    from convoscope.pipeline import run_pipeline
    from convoscope.stages import embed
    from fakes.corpus import make_records, write_jsonl

    data = write_jsonl(tmp_path / "convs.jsonl", make_records(per_topic=20, accounts=20))
    cfg = load_config(None, {"embedding.cache": False, "cluster.conversations_per_cluster": 12})
    in_process = run_pipeline(data, tmp_path / "one", cfg, show_progress=False).read_array("embeddings")
    monkeypatch.setattr(embed, "POOL_MIN_ROWS", 0)
    monkeypatch.setattr(embed.os, "cpu_count", lambda: 2)
    pooled = run_pipeline(data, tmp_path / "two", cfg, show_progress=False).read_array("embeddings")
    assert pooled.shape == in_process.shape and pooled.dtype == np.float16
    np.testing.assert_allclose(np.asarray(pooled, np.float32), np.asarray(in_process, np.float32), atol=2e-3)


def test_initial_positions_match_umaps_init_graph_transform():
    import scipy.sparse
    from umap.umap_ import init_graph_transform

    from convoscope.stages.project import initial_positions

    rng = np.random.default_rng(0)
    dense = rng.random((300, 50)) * (rng.random((300, 50)) < 0.1)
    dense[5] = 0  # no neighbours: NaN
    dense[7, [3, 9]] = 1.0  # two strengths of 1: the first one's position
    dense[8, 4] = 1.0
    graph = scipy.sparse.csr_matrix(dense.astype(np.float32))
    coords = rng.normal(size=(50, 2)).astype(np.float32)
    ours, umaps = initial_positions(graph, coords), init_graph_transform(graph, coords)
    np.testing.assert_allclose(ours, umaps, rtol=1e-5, atol=1e-6)
    assert np.isnan(ours[5]).all() and np.array_equal(ours[7], coords[3]) and np.array_equal(ours[8], coords[4])
