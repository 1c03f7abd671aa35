"""Stage 4: base clusters by k-means over the embeddings (the paper found k-means better than HDBSCAN
and agglomerative clustering). k follows the data size (`hierarchy_levels.choose_k`): clusters of
`conversations_per_cluster` conversations on large inputs (the paper costs its pipeline at about 100),
of about sqrt(n) on small ones, so that 500 conversations still give 17 clusters; the privacy gates,
not the cluster size, decide what is published."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from convoscope.components import cluster_with, custom_clusterer, fingerprint_parts
from convoscope.context import RunContext
from convoscope.hierarchy_levels import choose_k
from convoscope.kmeans import kmeans_on_sample
from convoscope.stage_runner import Stage, StageOutput, StageRecord, optional_field, run_stage


@dataclass(frozen=True)
class ClusterRecord(StageRecord):
    k: int
    rule: str  # how k (or the labels) were chosen
    noise_reassigned: int | None = optional_field()  # injected clusterer: noise labels moved to the nearest cluster


def _settings(ctx: RunContext) -> tuple:
    from convoscope.dp_kmeans import dp_fingerprint

    return ctx.config.cluster.model_dump(), ctx.config.seed, *fingerprint_parts(ctx, "clusterer"), *dp_fingerprint(ctx.config)


def _cluster(ctx: RunContext) -> StageOutput[ClusterRecord]:
    config = ctx.config
    vectors = ctx.store.read_array("embeddings")  # memory-mapped float16: read block by block below
    clusterer = custom_clusterer(ctx)
    if clusterer is not None:  # injected (convoscope.components): its labels, our centroids
        vectors = np.asarray(vectors, dtype=np.float32)
        with ctx.console.status(f"{type(clusterer).__name__}: clustering {len(vectors):,} conversations"):
            labels, centroids, noise = cluster_with(clusterer, vectors)
        k = len(centroids)
        record = ClusterRecord(k=int(k), rule=f"custom clusterer {type(clusterer).__name__}", noise_reassigned=noise)
    elif config.privacy.mode == "dp":  # differential privacy mode: DP k-means (convoscope.dp_kmeans, engineer E)
        from convoscope.dp_kmeans import dp_cluster

        labels, centroids, rule = dp_cluster(ctx, np.asarray(vectors, dtype=np.float32))
        k = len(centroids)
        record = ClusterRecord(k=int(k), rule=rule)
    else:
        k = choose_k(len(vectors), config.cluster)
        with ctx.console.status(f"k-means: {len(vectors):,} conversations into {k} base clusters"):
            labels, centroids = kmeans_on_sample(vectors, k, config.seed)
        c = config.cluster
        record = ClusterRecord(k=int(k), rule=f"k = conversations / clamp(sqrt(conversations), {c.min_conversations_per_cluster}, "
                                              f"{c.conversations_per_cluster}), within [{c.min_clusters}, {c.max_clusters}]")
    conv_ids = ctx.store.read_table("facets", columns=["conv_id"]).column("conv_id")
    table = pa.table({"conv_id": conv_ids, "cluster": pa.array(labels, type=pa.int32())})
    artifacts = [ctx.store.write_table("base_assignments", table), ctx.store.write_array("base_centroids", centroids)]
    return StageOutput(artifacts, record)


CLUSTER = Stage("cluster", _settings, _cluster)


def run_cluster(ctx: RunContext, upstream: str) -> str:
    return run_stage(CLUSTER, ctx, upstream)
