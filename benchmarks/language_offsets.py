"""Language offsets from topic-matched neighbours instead of whole-language means (tried for issue 14).

    python benchmarks/language_offsets.py RUN_DIR LABEL_FIELD

On a finished run made with centring off (`[embedding] centre_languages_min = 0`), replays the extractive
grouping (our k-means at the run's base k, Ward over [centroid, neighbour links] cut at the run's top count)
for seeds 0-4 on three versions of the run's vectors: raw; centred by whole-language means (the pipeline's
`centre_languages_min = 50`); and centred by offsets estimated from each language's rows minus the mean of
their 10 nearest rows in the other languages (topic-matched pairs, so a language's topic mix should not move
it), scaled by (n-1)/n and refined three times. Prints top and base NMI against LABEL_FIELD.
Results and commands in docs/evaluation.md ("Language centring as USE's default").
"""
import sys

import numpy as np
from sklearn.metrics import normalized_mutual_info_score as nmi
from convoscope.store import RunStore
from convoscope.eval.common import gold_labels
from convoscope.kmeans import kmeans
from convoscope.neighbours import cosine_knn
from convoscope.stages.hierarchy import neighbour_links, ward_cuts
from convoscope.language_centering import language_offsets, centre_rows, NOT_A_LANGUAGE

def matched_offsets(X, langs, min_rows, iters=3, k=10, per_lang=2000, seed=0):
    langs = np.asarray([str(l) for l in langs], dtype=object)
    names, counts = np.unique(langs, return_counts=True)
    kept = [n for n, c in zip(names, counts) if c >= min_rows and n not in NOT_A_LANGUAGE]
    if len(kept) < 2: return {}
    rng = np.random.default_rng(seed)
    rows = {L: np.sort(rng.choice(np.flatnonzero(langs == L), size=min(per_lang, (langs == L).sum()), replace=False)) for L in kept}
    off = {L: np.zeros(X.shape[1], np.float64) for L in kept}
    n = len(kept)
    for _ in range(iters):
        Y = {L: centre_rows(X[rows[L]], [L] * len(rows[L]), {L: off[L].astype(np.float32)}) for L in kept}
        g = {}
        for L in kept:
            others = np.vstack([Y[M] for M in kept if M != L])
            nn, _ = cosine_knn(Y[L], others, k)
            g[L] = (Y[L].astype(np.float64) - others[nn].astype(np.float64).mean(axis=1)).mean(axis=0)
        for L in kept:
            off[L] -= (n - 1) / n * g[L]
    return {L: v.astype(np.float32) for L, v in off.items()}

run = RunStore(sys.argv[1]); field = sys.argv[2]; seeds = [0, 1, 2, 3, 4]
gold = gold_labels(run, field).astype(str)
X = np.asarray(run.read_array("embeddings", mmap=False), dtype=np.float32)
langs = run.read_table("facets", columns=["language"]).column("language").to_pylist()
lv = run.read_table("hierarchy", columns=["level"]).column("level").to_numpy()
k = int((lv == lv.max()).sum()); T = int((lv == 0).sum())
variants = {"raw": X, "mean": centre_rows(X, langs, language_offsets(X, langs, 50)),
            "matched": centre_rows(X, langs, matched_offsets(X, langs, 50))}
print(sys.argv[1], "k", k, "T", T)
for name, V in variants.items():
    top, base = [], []
    for s in seeds:
        l, c = kmeans(V, k, s)
        cut = ward_cuts(c, [T], neighbour_links(V, l, c))[0]
        top.append(nmi(gold, cut[l])); base.append(nmi(gold, l))
    print(f"  {name:8s} top {np.mean(top):.3f} (sd {np.std(top):.3f})  base {np.mean(base):.3f}   " + " ".join(f"{t:.3f}" for t in top))
