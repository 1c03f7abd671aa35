"""Helpers shared by the evaluations: running LLM requests outside a pipeline run, metrics."""

from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np

from convoscope.llm import LLMRequest, LLMSettings, build_client


def complete_all(settings: LLMSettings, requests: Sequence[LLMRequest], description: str = "", progress: bool = False) -> list:
    """Run requests with a fresh client on a private event loop; responses in request order."""

    async def go():
        client = build_client(settings, progress=progress)
        try:
            return await client.complete_many(list(requests), description=description)
        finally:
            await client.aclose()

    return asyncio.run(go())


def gold_labels(store, field: str) -> np.ndarray:
    """The metadata field `field` of each analysed conversation of a run, in the run's row order, as
    strings (None where a conversation lacks it): the known categories an evaluation scores against."""
    import json

    from convoscope.stages.rows import analysed_rows

    metadata = [json.loads(m) if m else {} for m in analysed_rows(store).table.column("metadata").to_pylist()]
    return np.array([None if m.get(field) is None else str(m[field]) for m in metadata], dtype=object)


def purity(gold: Sequence, predicted: Sequence) -> float:
    """Share of items whose cluster's majority gold label is their own gold label."""
    gold = np.asarray(gold, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    if len(gold) == 0:
        return 0.0
    _, g = np.unique(gold.astype(str), return_inverse=True)
    _, p = np.unique(predicted.astype(str), return_inverse=True)
    table = np.zeros((p.max() + 1, g.max() + 1), dtype=np.int64)
    np.add.at(table, (p, g), 1)
    return float(table.max(axis=1).sum() / len(gold))


def agreement(gold: Sequence, predicted: Sequence) -> dict[str, float]:
    """NMI, ARI and purity of a clustering against gold labels (all in [0, 1] except ARI, which can dip below 0)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    gold_s = [str(x) for x in gold]
    pred_s = [str(x) for x in predicted]
    return {"nmi": round(float(normalized_mutual_info_score(gold_s, pred_s)), 4),
            "ari": round(float(adjusted_rand_score(gold_s, pred_s)), 4),
            "purity": round(purity(gold_s, pred_s), 4),
            "clusters": len(set(pred_s)), "gold_classes": len(set(gold_s))}
