"""Reconstruction evaluation: how well does the pipeline recover known categories?

Runs (or resumes) the pipeline on labelled data and reports three things (see docs/evaluation.md):

1. The paper's test. The top level is fixed to the gold categories and every conversation is
   assigned to one. The unit assigned is the conversation's BASE CLUSTER, as the hierarchy builder
   assigns clusters, not conversations: every member inherits its cluster's category, so the score
   measures both the purity of the base clusters and the assignment. Extractive mode assigns each
   base centroid to the nearest category name by cosine in the run's embedding space (a
   conversation-level nearest-name score is reported too); LLM mode asks the naming model to pick
   the category from the list for each base cluster's name and description (a JSON-schema request,
   as the paper did). Accuracy is reported overall and per language.
2. Unsupervised agreement of every level of the hierarchy with the gold labels: NMI, ARI, purity.
3. How many conversations ended in withheld clusters (the privacy gates). The accuracy above scores
   every conversation, withheld or not: it measures the clustering, not what is published.

And a naive baseline on the same embeddings: plain k-means (scikit-learn defaults) with the same base
k, then Ward agglomerative clustering of those centroids to the same top-level count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from convoscope.config import Config
from convoscope.eval.common import agreement, complete_all
from convoscope.llm.base import ChatMessage, LLMRequest

CATEGORY_SYSTEM = "You sort clusters of conversations into a fixed list of categories. Answer with the one category that fits best."


def category_label(value: str) -> str:
    """'kitchen_and_dining' -> 'kitchen and dining'."""
    return " ".join(str(value).replace("_", " ").split())


def category_request(name: str, description: str, categories: list[str]) -> LLMRequest:
    schema = {"type": "object", "properties": {"scratchpad": {"type": "string"}, "category": {"type": "string", "enum": categories}},
              "required": ["scratchpad", "category"], "additionalProperties": False}
    listing = "\n".join(f"- {c}" for c in categories)
    text = (f"Here is a cluster of conversations:\n<cluster>{name}: {description}</cluster>\n\n"
            f"Which of these categories does it belong to?\n<categories>\n{listing}\n</categories>\n\n"
            "Think briefly in the scratchpad, then give the category exactly as written in the list.")
    return LLMRequest(messages=(ChatMessage("user", text),), system=CATEGORY_SYSTEM, temperature=0.0, max_tokens=300,
                      json_schema=schema, role="naming", task="eval-category")


def _load_run(store, label_field: str, parent_field: str | None) -> dict[str, Any]:
    from convoscope.stages.rows import analysed_rows

    rows = analysed_rows(store)
    metadata = [json.loads(m) if m else {} for m in rows.table.column("metadata").to_pylist()]
    missing = sum(1 for m in metadata if m.get(label_field) is None)
    if missing == len(metadata):
        from convoscope.errors import InputError

        raise InputError(f"no conversation has the label field '{label_field}' in its metadata", path=str(store.manifest.get("input")))
    facets = store.read_table("facets", columns=["conv_id", "language"])
    detected = facets.column("language").to_pylist()
    languages = [str(m["language"]) if m.get("language") not in (None, "") else (d or "Unknown") for m, d in zip(metadata, detected)]
    labels = np.array([str(m.get(label_field)) for m in metadata], dtype=object)
    parents = np.array([None if m.get(parent_field) is None else str(m.get(parent_field)) for m in metadata], dtype=object) if parent_field else None
    assignments = store.read_table("assignments")
    assert assignments.column("conv_id").to_pylist() == rows.conv_ids, "assignments are not in facets order"
    n_levels = sum(1 for c in assignments.column_names if c.startswith("level_"))
    levels = [np.array(assignments.column(f"level_{i}").to_pylist(), dtype=object) for i in range(n_levels)]
    base = store.read_table("base_assignments", columns=["cluster"]).column("cluster").to_numpy().astype(np.int64)
    return {"n": len(rows.conv_ids), "labels": labels, "parents": parents, "languages": np.array(languages, dtype=object),
            "levels": levels, "base": base, "missing_labels": missing, "accounts": rows.accounts}


def _assign_extractive(config: Config, store, base: np.ndarray, categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Category index per conversation: by base centroid, and (for comparison) by the conversation's own vector."""
    from convoscope.embedders import make_embedder

    embedder = make_embedder(config.embedding.model)
    cat_vecs = embedder.encode([category_label(c) for c in categories])
    centroids = np.asarray(store.read_array("base_centroids", mmap=False))
    by_cluster = np.argmax(centroids @ cat_vecs.T, axis=1)[base]
    vectors = np.asarray(store.read_array("embeddings", mmap=False))
    by_conversation = np.concatenate([np.argmax(vectors[i:i + 8192] @ cat_vecs.T, axis=1) for i in range(0, len(vectors), 8192)]) if len(vectors) else np.zeros(0, int)
    return by_cluster, by_conversation


def _assign_llm(config: Config, store, base: np.ndarray, categories: list[str], show_progress: bool) -> tuple[np.ndarray, int]:
    clusters = store.read_table("base_clusters").to_pylist()
    labels = [category_label(c) for c in categories]
    lookup = {c.lower(): i for i, c in enumerate(labels)}
    answers = complete_all(config.llm, [category_request(c["name"], c["description"], labels) for c in clusters],
                           description="Assigning base clusters to the gold categories", progress=show_progress)
    choice = np.zeros(len(clusters), dtype=np.int64)
    failed = 0
    for i, resp in enumerate(answers):
        picked = resp.parsed.get("category") if (not resp.failed and isinstance(resp.parsed, dict)) else None
        idx = lookup.get(str(picked).strip().lower()) if picked else None
        if idx is None:
            failed += 1
            idx = 0  # counted as a failure; scored as whatever category 0 is
        choice[i] = idx
    return choice[base], failed


def _accuracy(gold: np.ndarray, predicted: np.ndarray, languages: np.ndarray) -> tuple[float, dict[str, dict[str, Any]]]:
    correct = gold == predicted
    per_language = {}
    for lang in sorted(set(languages.tolist())):
        mask = languages == lang
        per_language[str(lang)] = {"conversations": int(mask.sum()), "accuracy": round(float(correct[mask].mean()), 4)}
    return round(float(correct.mean()), 4) if len(correct) else 0.0, per_language


def baseline(vectors: np.ndarray, base_k: int, top_k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain k-means (scikit-learn defaults) to base_k, then Ward agglomerative clustering of its centroids to top_k."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    km = KMeans(n_clusters=base_k, random_state=seed).fit(vectors)
    base = km.labels_.astype(np.int64)
    if top_k >= base_k:
        return base, base
    parents = AgglomerativeClustering(n_clusters=top_k, linkage="ward").fit_predict(km.cluster_centers_)
    return base, parents[base]


def evaluate_reconstruction(input_path: str | Path, out_dir: str | Path, config: Config, *, label_field: str, parent_field: str | None = None,
                            console: Console | None = None, show_progress: bool = True, with_baseline: bool = True) -> dict[str, Any]:
    from convoscope.pipeline import run_pipeline

    console = console or Console(stderr=True)
    store = run_pipeline(input_path, out_dir, config, console=console, show_progress=show_progress)
    data = _load_run(store, label_field, parent_field)
    gold_top = data["parents"] if data["parents"] is not None else data["labels"]
    # conversations without a gold top category (e.g. CLINC150's out-of-scope queries have no domain)
    # are left out of the accuracy test and of the agreement with the top field, and counted
    labelled = np.array([g is not None and g != "None" for g in gold_top])
    categories = sorted(set(gold_top[labelled].tolist()))
    gold_index = np.full(len(gold_top), -1)
    gold_index[labelled] = np.searchsorted(np.array(categories, dtype=object), gold_top[labelled])
    result: dict[str, Any] = {
        "input": str(input_path), "run_dir": str(out_dir), "mode": "llm" if config.llm_mode else "extractive",
        "embedding_model": config.embedding.model, "conversations": data["n"], "label_field": label_field, "parent_field": parent_field,
        "gold_top_field": parent_field or label_field, "categories": len(categories), "chance": round(1 / len(categories), 4),
        "assignment_unit": "base cluster", "without_gold_top": int((~labelled).sum()),
    }
    if config.llm_mode:
        predicted, failed = _assign_llm(config, store, data["base"], categories, show_progress)
        result["assignment_method"] = "LLM picks one category per base cluster from its name and description (JSON schema enum)"
        result["assignment_failures"] = failed
    else:
        predicted, per_conv = _assign_extractive(config, store, data["base"], categories)
        result["assignment_method"] = "each base cluster's centroid to the nearest category name by cosine (same embedder)"
        result["accuracy_conversation_level"] = round(float((per_conv == gold_index)[labelled].mean()), 4)
    result["accuracy"], result["per_language"] = _accuracy(gold_index[labelled], predicted[labelled], data["languages"][labelled])

    # unsupervised agreement, every level (level 0 = top)
    levels = []
    n_levels = len(data["levels"])
    clusters = store.read_table("clusters").to_pylist()
    published = {c["id"]: bool(c["published"]) for c in clusters if c["kind"] == "cluster"}
    for lvl, assigned in enumerate(data["levels"]):
        entry: dict[str, Any] = {"level": lvl, "name": "top" if lvl == 0 else ("base" if lvl == n_levels - 1 else "middle"),
                                 "vs_label": agreement(data["labels"], assigned)}
        if data["parents"] is not None:
            entry["vs_parent"] = agreement(data["parents"][labelled], assigned[labelled])
        withheld = np.array([not published.get(c, False) for c in assigned])
        entry["withheld_conversations"] = int(withheld.sum())
        levels.append(entry)
    result["levels"] = levels
    top = levels[0]["vs_parent"] if data["parents"] is not None else levels[0]["vs_label"]
    result.update({"nmi": top["nmi"], "ari": top["ari"], "purity": top["purity"]})
    base_entry = levels[-1]["vs_label"]
    result["base"] = {"nmi": base_entry["nmi"], "ari": base_entry["ari"], "purity": base_entry["purity"], "clusters": base_entry["clusters"]}
    hidden = levels[-1]["withheld_conversations"]  # a conversation is withheld where its base cluster is
    result["withheld"] = {"clusters": sum(1 for v in published.values() if not v), "conversations": hidden,
                          "share": round(hidden / max(1, data["n"]), 4)}

    if with_baseline:
        vectors = np.asarray(store.read_array("embeddings", mmap=False))
        base_k = len(set(data["base"].tolist()))
        top_k = len(set(data["levels"][0].tolist()))
        with console.status(f"baseline: k-means ({base_k}) + Ward agglomerative ({top_k})"):
            b_base, b_top = baseline(vectors, base_k, top_k, config.seed)
        ours_top = data["levels"][0]
        gold = gold_top[labelled]
        ours_top, b_top = ours_top[labelled], b_top[labelled]
        result["baseline"] = {
            "method": f"plain KMeans(n_clusters={base_k}, scikit-learn defaults) on the same embeddings, then Ward agglomerative clustering of its centroids to {top_k}",
            "top": {"gold": parent_field or label_field, "baseline": agreement(gold, b_top), "ours": agreement(gold, ours_top)},
            "base": {"gold": label_field, "baseline": agreement(data["labels"], b_base), "ours": agreement(data["labels"], data["levels"][-1])},
        }
    return result


def format_summary(r: dict[str, Any]) -> list[str]:
    lines = [f"Reconstruction on {r['conversations']:,} conversations ({r['mode']}, {r['embedding_model']}), "
             f"{r['categories']} gold categories from '{r['gold_top_field']}' (chance {r['chance']:.1%})",
             f"  top level fixed to the gold categories, assigned per {r['assignment_unit']}: accuracy {r['accuracy']:.1%}"]
    if "accuracy_conversation_level" in r:
        lines.append(f"  (each conversation to its nearest category name instead: {r['accuracy_conversation_level']:.1%})")
    for lang, v in r["per_language"].items():
        lines.append(f"    {lang}: {v['accuracy']:.1%} of {v['conversations']:,}")
    for lvl in r["levels"]:
        a = lvl["vs_label"]
        text = f"  level {lvl['level']} ({lvl['name']}, {a['clusters']} clusters) vs {r['label_field']}: NMI {a['nmi']:.3f}  ARI {a['ari']:.3f}  purity {a['purity']:.3f}"
        if "vs_parent" in lvl:
            p = lvl["vs_parent"]
            text += f"   vs {r['parent_field']}: NMI {p['nmi']:.3f}  ARI {p['ari']:.3f}  purity {p['purity']:.3f}"
        lines.append(text)
    w = r["withheld"]
    lines.append(f"  withheld: {w['clusters']} clusters, {w['conversations']:,} conversations ({w['share']:.1%})")
    if "baseline" in r:
        b = r["baseline"]
        for key in ("top", "base"):
            ours, base = b[key]["ours"], b[key]["baseline"]
            lines.append(f"  baseline {key} vs {b[key]['gold']}: ours NMI {ours['nmi']:.3f} purity {ours['purity']:.3f} ARI {ours['ari']:.3f}  |  "
                         f"baseline NMI {base['nmi']:.3f} purity {base['purity']:.3f} ARI {base['ari']:.3f}")
    return lines
