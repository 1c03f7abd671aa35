"""Stage 4: base clusters by k-means over the embeddings (the paper found k-means better than HDBSCAN
and agglomerative clustering). k follows the data size: conversations / `conversations_per_cluster`
(the paper costs its pipeline at about 100 conversations per cluster), bounded by the settings."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from convoscope.components import cluster_with, custom_clusterer, fingerprint_parts
from convoscope.context import RunContext
from convoscope.hierarchy_levels import choose_k
from convoscope.kmeans import kmeans
from convoscope.store import fingerprint

STAGE = "cluster"
def run_cluster(ctx: RunContext, upstream: str) -> str:
    config = ctx.config
    fp = fingerprint(STAGE, upstream, config.cluster.model_dump(), config.seed, *fingerprint_parts(ctx, "clusterer"))
    if ctx.store.stage_complete(STAGE, fp):
        return fp
    started = time.perf_counter()
    vectors = np.asarray(ctx.store.read_array("embeddings", mmap=False))
    clusterer = custom_clusterer(ctx)
    info: dict = {}
    if clusterer is not None:  # injected (convoscope.components): its labels, our centroids
        with ctx.console.status(f"{type(clusterer).__name__}: clustering {len(vectors):,} conversations"):
            labels, centroids, noise = cluster_with(clusterer, vectors)
        k = len(centroids)
        info = {"rule": f"custom clusterer {type(clusterer).__name__}", "noise_reassigned": noise}
    else:
        k = choose_k(len(vectors), config.cluster)
        with ctx.console.status(f"k-means: {len(vectors):,} conversations into {k} base clusters"):
            labels, centroids = kmeans(vectors, k, config.seed)
    conv_ids = ctx.store.read_table("facets", columns=["conv_id"]).column("conv_id")
    table = pa.table({"conv_id": conv_ids, "cluster": pa.array(labels, type=pa.int32())})
    artifacts = [ctx.store.write_table("base_assignments", table), ctx.store.write_array("base_centroids", centroids)]
    ctx.store.mark_complete(STAGE, fp, artifacts, seconds=time.perf_counter() - started, k=int(k),
                            **(info or {"rule": f"k = conversations / {config.cluster.conversations_per_cluster}, within [{config.cluster.min_clusters}, {config.cluster.max_clusters}]"}))
    return fp
