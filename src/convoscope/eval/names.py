"""`convoscope eval names`: extractive cluster names side by side, before (distinctive terms) and after
(phrases, issue 14), on the same clusters of one run.

"Before" recomputes the previous namer on the run's base clusters: 1-2 word terms with English stopwords,
occurrence counts bounded per account, class-based TF-IDF, the top three terms joined by commas and the
description "Requests whose most distinctive terms are: ...". "After" is what the run's naming stage wrote
(base_clusters) and, for the top level, the hierarchy. Both are printed for the largest base clusters
(names of withheld clusters are not printed: the command shows only what a run would publish).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.console import Console

from convoscope.config import Config


def legacy_names(texts: list[str], accounts: np.ndarray, labels: np.ndarray, k: int, config: Config) -> list[tuple[str, str]]:
    """The namer before issue 14, for comparison."""
    from convoscope import policy
    from convoscope.keywords import build_keyword_index, class_tfidf_of_counts, group_term_counts, top_terms

    _, account_index = np.unique(accounts, return_inverse=True)
    account_index = account_index.reshape(-1)
    index = build_keyword_index(texts, list(accounts), config.privacy.min_accounts, public_figure_accounts=config.privacy.public_figure_accounts)
    weights = policy.per_account_weights(labels, account_index, config.privacy.max_conversations_per_account)
    scores = class_tfidf_of_counts(group_term_counts(sp.diags(weights) @ index.counts, labels, k))
    out = []
    for c in range(k):
        terms = top_terms(scores, index.terms, c, 5)
        if not terms:
            out.append(("Miscellaneous requests", ""))
            continue
        name = ", ".join(terms[:3])
        out.append((name[:1].upper() + name[1:], f"Requests whose most distinctive terms are: {', '.join(terms)}."))
    return out


def score_taxonomy(store, config: Config, spec: str, label_field: str) -> dict[str, Any]:
    """How well taxonomy labels (given to base clusters, inherited by their conversations) agree with a gold
    field, at the configured thresholds and with no threshold (every cluster gets its nearest entry):
    coverage (share of conversations labelled), purity and NMI of the labels against the gold field over the
    labelled conversations, and, for comparison, NMI of the run's top level over the same conversations."""
    from convoscope.components import embedder_for
    from convoscope.context import RunContext
    from convoscope.eval.common import agreement, gold_labels
    from convoscope.taxonomy import load_taxonomy, match

    entries = load_taxonomy(spec)
    ctx = RunContext(config=config, store=store, input_path=Path("."), show_progress=False)
    vectors = embedder_for(ctx).encode([f"{e.label}: {e.description}" for e in entries])
    centroids = np.asarray(store.read_array("base_centroids", mmap=False))
    base = store.read_table("base_assignments", columns=["cluster"]).column("cluster").to_numpy().astype(np.int64)
    gold = gold_labels(store, label_field)
    top = np.array(store.read_table("assignments", columns=["level_0"]).column("level_0").to_pylist(), dtype=object)
    has_gold = np.array([g is not None for g in gold])
    out: dict[str, Any] = {"taxonomy": spec, "entries": len(entries), "gold_field": label_field, "conversations_with_gold": int(has_gold.sum())}
    n = config.naming
    for key, (sim, margin) in {"thresholds": (n.taxonomy_min_similarity, n.taxonomy_margin), "nearest": (-1.0, 0.0)}.items():
        chosen = match(centroids, vectors, sim, margin)[base]
        labelled = has_gold & (chosen >= 0)
        labels = np.array([entries[i].label if i >= 0 else "" for i in chosen], dtype=object)
        entry = {"min_similarity": sim, "margin": margin, "coverage": round(float(labelled.sum() / max(1, has_gold.sum())), 4),
                 "labels_used": len(set(labels[labelled].tolist()))}
        if labelled.any():
            entry["labels_vs_gold"] = agreement(gold[labelled], labels[labelled])
            entry["top_level_vs_gold_same_conversations"] = agreement(gold[labelled], top[labelled])
        out[key] = entry
    return out


def compare_names(input_path: str | Path, out_dir: str | Path, config: Config, *, top: int = 15, console: Console | None = None,
                  show_progress: bool = True, score_taxonomy_spec: str | None = None, label_field: str | None = None) -> dict[str, Any]:
    from convoscope.analysis_text import analysis_texts
    from convoscope.context import RunContext
    from convoscope.pipeline import run_pipeline
    from convoscope.stages.rows import analysed_rows

    if config.llm_mode:
        from convoscope.errors import ConfigError

        raise ConfigError("eval names compares extractive names; run it without --llm")
    console = console or Console(stderr=True)
    store = run_pipeline(input_path, out_dir, config, console=console, show_progress=show_progress)
    ctx = RunContext(config=config, store=store, input_path=Path(input_path), console=console, show_progress=False)
    labels = store.read_table("base_assignments", columns=["cluster"]).column("cluster").to_numpy().astype(np.int64)
    rows = analysed_rows(store)
    k = int(labels.max()) + 1 if len(labels) else 0
    texts = list(analysis_texts(ctx))
    before = legacy_names(texts, rows.accounts, labels, k, config)
    del texts
    clusters = store.read_table("clusters").to_pylist()
    published = {c["id"]: c for c in clusters if c["kind"] == "cluster" and c["published"]}
    sizes = np.bincount(labels, minlength=k)
    base_rows = []
    for c in np.argsort(-sizes, kind="stable"):
        row = published.get(f"b{c}")
        if row is None:
            continue
        base_rows.append({"id": f"b{c}", "size": int(sizes[c]), "share": round(float(sizes[c] / max(1, len(labels))), 4),
                          "before": {"name": before[c][0], "description": before[c][1]},
                          "after": {"name": row["name"], "description": row["description"]}})
        if len(base_rows) == top:
            break
    top_level = sorted((c for c in published.values() if c["level"] == 0), key=lambda c: -c["size"])
    record = store.stage_record("name") or {}
    scored = score_taxonomy(store, config, score_taxonomy_spec, label_field) if score_taxonomy_spec and label_field else None
    return {"taxonomy_score": scored, "input": str(input_path), "run_dir": str(out_dir), "conversations": int(len(labels)), "base_clusters": k,
            "published_base_clusters": sum(1 for i in published if i.startswith("b")),
            "taxonomy": config.naming.taxonomy,
            "naming": {key: record.get(key) for key in ("vocabulary", "k_anonymous_vocabulary", "boilerplate_phrases", "name_fallbacks")},
            "base": base_rows, "top": [{"id": c["id"], "size": int(c["size"]), "name": c["name"], "description": c["description"]} for c in top_level]}


def format_names(r: dict[str, Any]) -> list[str]:
    lines = [f"Names on {r['conversations']:,} conversations, {r['base_clusters']} base clusters "
             f"({r['published_base_clusters']} published); taxonomy: {r['taxonomy'] or 'none'}",
             f"  naming: {r['naming']}", "", "| share | before (terms) | after (phrases) |", "| --- | --- | --- |"]
    for row in r["base"]:
        lines.append(f"| {row['share']:.1%} | {row['before']['name']} | {row['after']['name']} |")
    lines += ["", "Descriptions of the three largest, before / after:"]
    for row in r["base"][:3]:
        lines += [f"  - {row['before']['description']}", f"    {row['after']['description']}"]
    lines += ["", "Top level (after):"]
    lines += [f"  {c['size']:>6,}  {c['name']}" for c in r["top"]]
    t = r.get("taxonomy_score")
    if t:
        lines += ["", f"Taxonomy {t['taxonomy']} ({t['entries']} entries) against '{t['gold_field']}' ({t['conversations_with_gold']:,} conversations):"]
        for key in ("thresholds", "nearest"):
            e = t[key]
            text = f"  {key} (similarity >= {e['min_similarity']}, margin >= {e['margin']}): coverage {e['coverage']:.1%}, {e['labels_used']} labels used"
            if "labels_vs_gold" in e:
                a, b = e["labels_vs_gold"], e["top_level_vs_gold_same_conversations"]
                text += (f"; labels NMI {a['nmi']:.3f} purity {a['purity']:.3f}  |  top level on the same conversations "
                         f"({b['clusters']} clusters) NMI {b['nmi']:.3f} purity {b['purity']:.3f}")
            lines.append(text)
    return lines
