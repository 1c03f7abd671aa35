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


def compare_names(input_path: str | Path, out_dir: str | Path, config: Config, *, top: int = 15, console: Console | None = None,
                  show_progress: bool = True) -> dict[str, Any]:
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
    return {"input": str(input_path), "run_dir": str(out_dir), "conversations": int(len(labels)), "base_clusters": k,
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
    return lines
