"""How many base clusters small inputs should get: base NMI and published share on seeded slices of a labelled run.

    python benchmarks/base_cluster_count.py RUN_DIR --field label [--sizes 500,2000] [--seeds 0,1,2]

RUN_DIR is a finished run on labelled data (e.g. `convoscope eval reconstruction
../shared/data/clinc150/clinc150.jsonl --label-field label --out runs/clinc`); its embeddings are reused.
For each slice size and seed it draws that many conversations (seeded), and for each rule chooses k with
`hierarchy_levels.choose_k`, runs the cluster stage's k-means and prints:

- k, and the base level's NMI against --field,
- the published share: conversations in base clusters that pass the privacy stage's size gates
  (`policy.passes_size_gates`, default settings). Public labelled sets have no account ids, so every
  conversation counts as its own account here, as in `eval reconstruction`; with real accounts fewer pass.

Rules compared: `old` (k = n / conversations_per_cluster, the rule before issue 14) and the default
(clusters of about sqrt(n) conversations, at least `cluster.min_conversations_per_cluster`, at most
`conversations_per_cluster`), plus the default with other floors (`--floors`).
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from convoscope import policy
from convoscope.config import ClusterSettings, PrivacySettings
from convoscope.hierarchy_levels import choose_k
from convoscope.kmeans import kmeans
from convoscope.eval.common import gold_labels
from convoscope.store import RunStore


def published_share(labels: np.ndarray, privacy: PrivacySettings) -> tuple[float, int]:
    """Share of conversations in base clusters that pass the size gates, and how many clusters pass
    (each conversation its own account)."""
    sizes = np.bincount(labels)
    passing = [s for s in sizes if policy.passes_size_gates(int(s), int(s), int(s), 1, privacy)]
    return sum(passing) / len(labels), len(passing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--field", required=True, help="metadata field holding the gold fine label")
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--floors", default="15,50", help="other values of cluster.min_conversations_per_cluster to compare")
    args = parser.parse_args()
    store = RunStore(args.run)
    gold = gold_labels(store, args.field).astype(str)
    vectors = np.asarray(store.read_array("embeddings", mmap=False), dtype=np.float32)
    default = ClusterSettings()
    rules = {"old": ClusterSettings(min_conversations_per_cluster=default.conversations_per_cluster),
             f"default (floor {default.min_conversations_per_cluster})": default}
    rules.update({f"floor {f}": ClusterSettings(min_conversations_per_cluster=int(f)) for f in args.floors.split(",")})
    privacy = PrivacySettings()
    print(f"{args.run}: {len(vectors):,} conversations, gold = {args.field}; published = passes the size gates "
          f"({privacy.min_accounts} accounts, {privacy.min_conversations} conversations), each conversation its own account")
    for n in (int(s) for s in args.sizes.split(",")):
        scores: dict[str, list[tuple[int, float, float, int]]] = {name: [] for name in rules}
        for seed in (int(s) for s in args.seeds.split(",")):
            sample = np.sort(np.random.default_rng(seed).choice(len(vectors), size=min(n, len(vectors)), replace=False))
            for name, settings in rules.items():
                k = choose_k(len(sample), settings)
                labels, _ = kmeans(vectors[sample], k, seed)
                share, passing = published_share(labels, privacy)
                scores[name].append((k, normalized_mutual_info_score(gold[sample], labels), share, passing))
        print(f"n = {n:,} (mean of seeds {args.seeds}): rule: k, base NMI (lowest), published share, published clusters")
        for name, s in scores.items():
            a = np.array(s, dtype=np.float64)
            print(f"  {name:22s} k {a[:, 0].mean():5.0f}  NMI {a[:, 1].mean():.3f} ({a[:, 1].min():.3f})  "
                  f"published {a[:, 2].mean():6.1%}  clusters {a[:, 3].mean():5.1f}", flush=True)


if __name__ == "__main__":
    main()
