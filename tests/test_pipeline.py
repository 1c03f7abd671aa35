"""End-to-end pipeline behaviour a user relies on: shape of the hierarchy, privacy gates, reruns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convoscope.config import load_config
from convoscope.pipeline import run_pipeline
from convoscope.report import report_json
from convoscope.hierarchy_levels import level_sizes
from convoscope.stages.hierarchy import neighbour_links, ward_cuts
from fakes.corpus import make_records, write_jsonl

SMALL = {"cluster.conversations_per_cluster": 12, "privacy.min_conversations": 5, "privacy.min_accounts": 3}


@pytest.fixture(scope="module")
def extractive_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("extractive")
    data = write_jsonl(root / "convs.jsonl", make_records(per_topic=70, accounts=40))
    cfg = load_config(None, SMALL)
    store = run_pipeline(data, root / "run", cfg, show_progress=False)
    return data, root / "run", store, cfg


def test_hierarchy_is_a_tree_with_consistent_counts(extractive_run):
    _, _, store, cfg = extractive_run
    rep = report_json(store)
    clusters = rep["clusters"]
    by_id = {c["id"]: c for c in clusters}
    assert rep["levels"] >= 2
    tops = [c for c in clusters if c["level"] == 0]
    assert sum(c["size"] for c in tops) == rep["run"]["conversations"]
    for c in clusters:
        if c["kind"] == "cluster":
            assert c["published"] and c["size"] >= cfg.privacy.min_conversations and c["accounts"] >= cfg.privacy.min_accounts
        if c["parent"] is not None:
            assert by_id[c["parent"]]["level"] == c["level"] - 1
    for c in clusters:  # children (published + other) add up to the parent
        if c["children"]:
            assert sum(by_id[k]["size"] for k in c["children"]) == c["size"]
    hierarchy = store.read_table("hierarchy").to_pylist()
    for h in hierarchy:  # every non-top cluster has exactly one existing parent, and no parent is empty
        if h["level"] > 0:
            assert h["parent"] in {x["id"] for x in hierarchy if x["level"] == h["level"] - 1}
        if h["level"] < rep["levels"] - 1:
            assert any(x["parent"] == h["id"] for x in hierarchy)


def test_extractive_names_are_distinctive_terms_and_topics_separate(extractive_run):
    _, _, store, _ = extractive_run
    base = store.read_table("assignments").to_pylist()
    conversations = store.read_table("conversations").to_pylist()
    topic = {c["conv_id"]: json.loads(c["metadata"])["topic"] for c in conversations}
    levels = store.manifest["stages"]["hierarchy"]["levels"]
    per_cluster: dict[str, list[str]] = {}
    for row in base:
        per_cluster.setdefault(row[f"level_{levels - 1}"], []).append(topic[row["conv_id"]])
    purity = sum(max(map(ts.count, set(ts))) for ts in per_cluster.values()) / len(base)
    assert purity > 0.9  # four clearly different topics must not be mixed at the base level
    names = " ".join(c["name"].lower() for c in report_json(store)["clusters"])
    assert any(w in names for w in ("tax", "python", "travel", "recipe", "flight"))
    assert store.manifest["stages"]["facets"]["unavailable"]["concerning"].startswith("needs an LLM")


def test_rerun_skips_every_stage_and_gives_the_same_result(extractive_run):
    data, run_dir, store, cfg = extractive_run
    before = {name: rec["finished_at"] for name, rec in store.manifest["stages"].items()}
    again = run_pipeline(data, run_dir, cfg, show_progress=False)
    after = {name: rec["finished_at"] for name, rec in again.manifest["stages"].items()}
    assert before == after
    assert again.read_json("aggregates") == store.read_json("aggregates")


def test_same_input_into_a_new_directory_gives_identical_clusters(extractive_run, tmp_path):
    data, _, store, cfg = extractive_run
    other = run_pipeline(data, tmp_path / "again", cfg, show_progress=False)
    a = [(c["id"], c["name"], c["size"]) for c in store.read_json("aggregates")["clusters"]]
    b = [(c["id"], c["name"], c["size"]) for c in other.read_json("aggregates")["clusters"]]
    assert a == b


def test_small_clusters_are_withheld_and_counted_in_other(tmp_path):
    records = make_records(per_topic=60, accounts=40)
    # a rare topic from two accounts only: it may form a cluster but must never be published
    for i in range(12):
        records.append({"id": f"rare-{i}", "user": f"rare-{i % 2}", "messages": [{"role": "user", "content": f"Zorblax quantum origami folding step {i} for my Zorblax sculpture"}]})
    data = write_jsonl(tmp_path / "c.jsonl", records)
    cfg = load_config(None, {**SMALL, "privacy.min_accounts": 5})
    store = run_pipeline(data, tmp_path / "run", cfg, show_progress=False)
    agg = store.read_json("aggregates")
    text = json.dumps(agg).lower()
    assert "zorblax" not in text and "origami" not in text and "sculpture" not in text
    published_total = sum(c["size"] for c in agg["clusters"] if c["level"] == 0)
    assert published_total == agg["run"]["conversations"]  # withheld conversations are still counted (in "other")


def test_level_sizes_are_geometric_and_always_terminate():
    cfg = load_config(None, {})
    sizes = level_sizes(1000, cfg.hierarchy)
    assert sizes[0] == 1000 and sizes[-1] == 30 and len(sizes) == 3
    assert sizes[0] > sizes[1] > sizes[2]
    ratio = (sizes[-1] / sizes[0]) ** 0.5
    assert abs(sizes[1] - 1000 * ratio) <= 1
    for n in (1, 2, 5, 7, 40, 59, 60, 333, 10_000):
        s = level_sizes(n, cfg.hierarchy)
        assert s[0] == n and all(a > b for a, b in zip(s, s[1:]))
    cfg2 = load_config(None, {"hierarchy.levels": 4, "hierarchy.top_clusters": 10})
    assert level_sizes(1000, cfg2.hierarchy) == [1000, 215, 46, 10]


def _arc(start_deg, end_deg, n):
    angles = np.radians(np.linspace(start_deg, end_deg, n))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def test_clusters_that_share_a_boundary_are_grouped_before_nearer_centroids():
    # One dense arc (0-60 degrees) cut into two clusters, and a separate tight cluster at 70-74 degrees
    # whose centroid (72) is nearer to the second half's (45) than the two halves are to each other.
    vectors = np.vstack([_arc(0, 29.5, 60), _arc(30, 60, 60), _arc(70, 74, 60)])
    labels = np.repeat([0, 1, 2], 60)
    centroids = np.stack([vectors[labels == c].mean(axis=0) for c in range(3)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    links = neighbour_links(vectors, labels, centroids, neighbours=5, candidate_clusters=3)
    shares = links.toarray()
    assert np.allclose(shares.sum(axis=1), 1.0)
    assert shares[0, 2] == 0 and shares[2, 0] == 0 and shares[1, 2] == 0  # the gap has no neighbour links
    assert shares[0, 1] > 0 and shares[1, 0] > 0  # the two halves touch
    assert all(shares[c, c] == shares[c].max() for c in range(3))
    centroids_only = ward_cuts(centroids, [2])[0]
    with_links = ward_cuts(centroids, [2], links)[0]
    assert centroids_only[1] == centroids_only[2] != centroids_only[0]  # nearest centroids merge first
    assert with_links[0] == with_links[1] != with_links[2]  # the arc stays together


def test_ward_cuts_are_nested_at_every_level():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.argmax(vectors[:, :6], axis=1) + 6 * (vectors[:, 6] > 0)
    centroids = np.stack([vectors[labels == c].mean(axis=0) for c in range(12)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    fine, coarse = ward_cuts(centroids, [6, 3], neighbour_links(vectors, labels, centroids))
    assert len(set(fine)) == 6 and len(set(coarse)) == 3
    assert all(len({coarse[i] for i in np.flatnonzero(fine == g)}) == 1 for g in range(6))


def test_map_coordinates_cover_every_conversation(extractive_run):
    _, _, store, _ = extractive_run
    points = store.read_table("points")
    assert points.num_rows == store.read_table("facets").num_rows
    assert np.isfinite(points.column("x").to_numpy()).all()
    assert "conv_id" not in points.column_names


def test_exact_neighbours_match_a_brute_force_search():
    from convoscope.neighbours import cosine_knn

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(300, 16)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    queries = ref[:50] + 0.01 * rng.normal(size=(50, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    indices, distances = cosine_knn(queries, ref, 5)
    expected = np.argsort(-(queries @ ref.T), axis=1)[:, :5]
    assert (indices == expected).all() and (indices[:, 0] == np.arange(50)).all()
    assert (np.diff(distances, axis=1) >= 0).all() and distances.min() >= 0


def test_points_outside_the_fitted_sample_land_with_their_own_group():
    from convoscope.stages.project import project_2d

    rng = np.random.default_rng(2)
    centres = np.eye(32, dtype=np.float32)[:3]
    vectors = np.vstack([c + 0.15 * rng.normal(size=(400, 32)).astype(np.float32) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    group = np.repeat(np.arange(3), 400)
    coords = project_2d(vectors, n_neighbors=15, min_dist=0.0, fit_sample=300, seed=0)  # 900 of 1,200 are placed
    assert coords.shape == (1200, 2) and np.isfinite(coords).all()
    centroids = np.stack([coords[group == g].mean(axis=0) for g in range(3)])
    nearest = np.argmin(((coords[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest == group).mean() > 0.99
    assert (project_2d(vectors, 15, 0.0, 300, 0) == coords).all()  # seeded: the same map every time
