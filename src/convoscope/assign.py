"""New data into an existing run (`convoscope assign RUN NEW_INPUT --out NEW_RUN`): the paper's
monitoring use, "where do this week's conversations go?", without rebuilding the hierarchy.

NEW_RUN gets RUN's configuration (only ingest options, and in LLM mode the LLM backends, may be
overridden) and the same embedding model. The usual stages read the new input (ingest, screen,
facets, embed); then, instead of clustering, naming and building a hierarchy:

- **Placement.** Each new conversation goes to the base cluster of RUN whose centroid is most
  cosine-similar to its embedding, unless that similarity is below a threshold: then it goes to the
  "Unassigned (new topic)" bucket, a cluster of its own at every level (`new` at the base,
  `new-l<level>` above), so nothing is silently dropped. The default threshold comes from RUN itself:
  the 5th percentile of its own members' similarity to their own centroid (see `run_threshold`);
  `threshold=` overrides it. Both are recorded in NEW_RUN's manifest (`assigned_from`).
- **Tables.** `base_assignments` (cluster -1: unassigned, plus each conversation's best
  `similarity`), `base_centroids` (RUN's), `base_clusters`, `hierarchy` and `assignments` (levels
  through RUN's parent links) and `map`, so the normal privacy and aggregates stages run unchanged.
  Clusters without a new conversation are left out (compare shows them as "not published", as any
  cluster withheld here: it cannot tell the two apart without saying whether a withheld count is 0).
- **Names.** Names come from RUN's release (its `clusters` table: after the privacy stage's rewrites),
  never from a model run here. A name RUN published is marked `name_source = "inherited"`: the privacy
  stage does not check or audit it again. Any other node (withheld in RUN, or shown there as "Name
  withheld") carries no name at all (`"inherited-withheld"`): a leaf stays withheld, an inner node can
  only be shown as "Name withheld". The unassigned bucket's text is fixed (`"none"`): counts only.
- **Privacy.** The normal privacy stage then applies every count gate on the NEW data (accounts,
  bounded size, account share, secondary suppression); the aggregates stage publishes as usual.
- **Map.** A new conversation's position is the mean map position of its 10 nearest RUN
  conversations by embedding, searched among the RUN conversations of base clusters RUN published
  (so published positions are averages of positions RUN itself published; all RUN conversations only
  when RUN published no base cluster).

- **Embedder.** A RUN made with an injected embedder (`Pipeline(embedder=...)`) needs the same one
  (`embedder=`, same `name`); without it, or with another, assign refuses before reading anything.

Every artifact above is recorded with a fingerprint, so re-running assign resumes.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console

from convoscope.config import Config
from convoscope.context import RunContext
from convoscope.errors import ConfigError, ConvoscopeError
from convoscope.ingest import MemorySource
from convoscope.language_centering import centre_rows, offsets_from_json
from convoscope.neighbours import cosine_knn
from convoscope.policy import NAME_WITHHELD
from convoscope.stages.rows import analysed_rows, distinct_per_group
from convoscope.store import RunLock, RunStore, fingerprint

UNASSIGNED_ID = "new"
UNASSIGNED_NAME = "Unassigned (new topic)"
UNASSIGNED_DESCRIPTION = "New conversations not close enough to any cluster of the original run."
THRESHOLD_PERCENTILE = 5.0
MAP_NEIGHBOURS = 10
SIMILARITY_TOLERANCE = 1e-6
# Changes when the placement rules change, so older assign runs are recomputed rather than resumed.
ASSIGN_VERSION = "assign-v1"
# Only these settings may differ from RUN's: anything else (embedding model, facets, privacy
# thresholds) would make the new data incomparable with the run it is placed into.
OVERRIDABLE = ("ingest.", "llm.")
REQUIRED = ("json:aggregates", "array:embeddings", "array:base_centroids", "table:base_assignments", "table:hierarchy",
            "table:clusters", "table:map")


def unassigned_id(level: int, n_levels: int) -> str:
    """The unassigned bucket's id at `level` (0 = top)."""
    return UNASSIGNED_ID if level == n_levels - 1 else f"{UNASSIGNED_ID}-l{level}"


def _finished_run(run_dir: str | Path) -> RunStore:
    try:
        source = RunStore(run_dir)
    except ConvoscopeError:
        raise ConvoscopeError(f"{run_dir}: not a convoscope run directory; RUN must be a finished `convoscope run`") from None
    missing = [name for name in REQUIRED if not source.has(name)]
    if missing or source.stage_record("aggregates") is None:
        raise ConvoscopeError(f"{run_dir}: not a finished run (missing {', '.join(n.split(':', 1)[1] for n in missing) or 'aggregates'}); "
                              "finish it with `convoscope run` first")
    if "config" not in source.manifest:
        raise ConvoscopeError(f"{run_dir}: the run's manifest has no configuration; re-run it with this version of convoscope")
    if (source.manifest["config"].get("privacy") or {}).get("mode") == "dp":
        raise ConvoscopeError(f"{run_dir}: a differential-privacy run; assigning new data into it would publish counts outside its "
                              "(epsilon, delta) budget, which is not supported: run the new data with `convoscope run --privacy dp`")
    return source


def _run_facet(source: RunStore) -> str:
    """The facet RUN's hierarchy is built on (a facet store: its own facet)."""
    if source.parent is not None:
        return source._manifest.get("facet") or source.facets()[0]
    return source.facets()[0]


def assign_config(source: RunStore, overrides: dict[str, Any] | None = None) -> Config:
    """RUN's configuration with the given dotted overrides (ingest.* and llm.* only), one hierarchy: RUN's."""
    data = copy.deepcopy(source.manifest["config"])
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if not dotted.startswith(OVERRIDABLE):
            raise ConfigError(f"assign: '{dotted}' cannot differ from the run's own setting (only ingest.* and llm.* can)")
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    # the new conversations are embedded as they are, then moved by RUN's own language offsets (in _place),
    # so they land in RUN's space instead of being centred on their own languages' means
    data.setdefault("embedding", {})["centre_languages_min"] = 0
    data.setdefault("facets", {})["hierarchy_facets"] = [_run_facet(source)]
    data["facets"].pop("hierarchy_facet", None)
    try:
        return Config.model_validate(data)
    except Exception as e:  # pydantic's ValidationError, told as a configuration error
        raise ConfigError(f"assign: invalid configuration: {e}") from None


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def run_threshold(source: RunStore) -> float:
    """The default similarity threshold: the 5th percentile, over all of RUN's conversations, of each
    one's cosine similarity to its own base centroid. So about 95% of RUN's own members would be
    placed again, and a new conversation further from every centroid than nearly all members are
    from theirs is a new topic.

    One global threshold rather than one per cluster: a base cluster holds a few dozen to a few
    hundred conversations, so a per-cluster 5th percentile rests on one or two of them (the
    loosest member of a small cluster would set its bar); the global one is estimated from every
    conversation, and all similarities are on one scale (unit vectors of one model)."""
    vectors = np.asarray(source.read_array("embeddings", mmap=False), dtype=np.float32)
    labels = source.read_table("base_assignments", columns=["cluster"]).column("cluster").to_numpy().astype(np.int64)
    centroids = _unit(source.read_array("base_centroids", mmap=False))
    own = np.einsum("ij,ij->i", vectors, centroids[labels])
    return float(np.percentile(own, THRESHOLD_PERCENTILE))


def _released_names(source: RunStore) -> dict[str, tuple[str, str, str]]:
    """RUN's cluster id -> (name_source, name, description): names RUN published, else no name."""
    out = {}
    for c in source.read_table("clusters").to_pylist():
        if c["kind"] != "cluster":
            continue
        if c["published"] and c["name"] != NAME_WITHHELD:
            out[c["id"]] = ("inherited", c["name"], c["description"] or "")
        else:
            out[c["id"]] = ("inherited-withheld", NAME_WITHHELD, "")
    return out


def _place(ctx: RunContext, source: RunStore, upstream: str, threshold: float, threshold_source: str) -> tuple[str, str]:
    """Write NEW_RUN's cluster, name, hierarchy and map artifacts; returns (placement fp, map fp)."""
    store = ctx.store
    fp = fingerprint(ASSIGN_VERSION, upstream, str(source.root.resolve()), source.stage_fingerprint("privacy"),
                     source.stage_fingerprint("map"), round(threshold, 6))
    stages = ("cluster", "name", "hierarchy", "map")
    if all(store.stage_complete(s, fp) for s in stages):
        return fp, fp
    started = time.perf_counter()
    centroids = _unit(source.read_array("base_centroids", mmap=False))
    vectors = np.asarray(store.read_array("embeddings", mmap=False), dtype=np.float32)
    if source.has("json:language_offsets"):  # RUN clustered language-centred vectors (convoscope.language_centering)
        languages = store.read_table("facets", columns=["language"]).column("language").to_pylist()
        vectors = centre_rows(vectors, languages, offsets_from_json(source.read_json("language_offsets")))
    sims = vectors @ centroids.T
    best = np.argmax(sims, axis=1)
    best_sim = sims[np.arange(len(vectors)), best]
    # the tolerance keeps a copy of a RUN member in its cluster when float rounding differs by an ulp
    labels = np.where(best_sim >= threshold - SIMILARITY_TOLERANCE, best, -1).astype(np.int64)

    run_rows = source.read_table("hierarchy").to_pylist()
    n_levels = max(r["level"] for r in run_rows) + 1
    base_ids = source.read_table("base_clusters", columns=["id"]).column("id").to_pylist()  # row c is k-means label c
    parent_of = {r["id"]: r["parent"] for r in run_rows}
    released = _released_names(source)

    rows = analysed_rows(store)
    conv_ids = store.read_table("facets", columns=["conv_id"]).column("conv_id").to_pylist()
    # each base cluster's path from the base up; the unassigned bucket's path is its own
    path_of: dict[int, list[str]] = {}
    for label in np.unique(labels).tolist():
        if label < 0:
            path_of[label] = [unassigned_id(level, n_levels) for level in range(n_levels - 1, -1, -1)]
        else:
            chain = [base_ids[label]]
            while parent_of.get(chain[-1]) is not None:
                chain.append(parent_of[chain[-1]])
            path_of[label] = chain
    columns = {f"level_{level}": [path_of[int(lab)][n_levels - 1 - level] for lab in labels] for level in range(n_levels)}

    # every node with a new conversation: RUN's order, then the unassigned bucket's
    records: dict[str, list] = {k: [] for k in ("id", "level", "parent", "name", "description", "size", "accounts", "name_source")}
    node_sizes: dict[str, tuple[int, int]] = {}
    for level in range(n_levels):
        ids = np.asarray(columns[f"level_{level}"], dtype=object)
        uniq, inverse = np.unique(ids, return_inverse=True)
        sizes = np.bincount(inverse.reshape(-1), minlength=len(uniq))
        accounts = distinct_per_group(inverse.reshape(-1), rows.accounts, len(uniq))
        node_sizes.update({cid: (int(s), int(a)) for cid, s, a in zip(uniq.tolist(), sizes, accounts)})
    nodes = [(r["id"], r["level"], r["parent"], *released.get(r["id"], ("inherited-withheld", NAME_WITHHELD, ""))) for r in run_rows]
    if (labels < 0).any():
        nodes += [(unassigned_id(level, n_levels), level, unassigned_id(level - 1, n_levels) if level else None, "none", UNASSIGNED_NAME,
                   UNASSIGNED_DESCRIPTION) for level in range(n_levels)]
    for cid, level, parent, source_kind, name, desc in nodes:
        if cid not in node_sizes:
            continue
        for key, value in (("id", cid), ("level", level), ("parent", parent), ("name", name), ("description", desc),
                           ("size", node_sizes[cid][0]), ("accounts", node_sizes[cid][1]), ("name_source", source_kind)):
            records[key].append(value)
    hierarchy = pa.table({**records, "level": pa.array(records["level"], type=pa.int32()), "size": pa.array(records["size"], type=pa.int64()),
                          "accounts": pa.array(records["accounts"], type=pa.int64())})
    assignments = pa.table({"conv_id": conv_ids, **columns})
    base = [i for i, lv in enumerate(records["level"]) if lv == n_levels - 1]
    base_clusters = pa.table({"id": [records["id"][i] for i in base], "name": [records["name"][i] for i in base],
                              "description": [records["description"][i] for i in base],
                              "size": pa.array([records["size"][i] for i in base], type=pa.int64()),
                              "accounts": pa.array([records["accounts"][i] for i in base], type=pa.int64())})
    base_assignments = pa.table({"conv_id": conv_ids, "cluster": pa.array(labels, type=pa.int32()),
                                 "similarity": pa.array(best_sim.astype(np.float32))})

    # map: mean position of the nearest RUN conversations, among those of base clusters RUN published
    run_vectors = np.asarray(source.read_array("embeddings", mmap=False), dtype=np.float32)
    run_labels = source.read_table("base_assignments", columns=["cluster"]).column("cluster").to_numpy().astype(np.int64)
    run_map = source.read_table("map")
    published_base = np.array([released.get(b, ("",))[0] == "inherited" for b in base_ids], dtype=bool)
    reference = np.flatnonzero(published_base[run_labels])
    if len(reference) == 0:  # RUN published no position: no position is derived from withheld ones (left off the map)
        map_table = pa.table({"conv_id": conv_ids, "x": pa.array(np.full(len(conv_ids), np.nan, dtype=np.float32)),
                              "y": pa.array(np.full(len(conv_ids), np.nan, dtype=np.float32))})
    else:
        idx, _ = cosine_knn(vectors, run_vectors[reference], MAP_NEIGHBOURS)
        rx = run_map.column("x").to_numpy()[reference]
        ry = run_map.column("y").to_numpy()[reference]
        map_table = pa.table({"conv_id": conv_ids, "x": pa.array(rx[idx].mean(axis=1).astype(np.float32)),
                              "y": pa.array(ry[idx].mean(axis=1).astype(np.float32))})

    seconds = time.perf_counter() - started
    unassigned = int((labels < 0).sum())
    store.mark_complete("cluster", fp, [store.write_table("base_assignments", base_assignments),
                                        store.write_array("base_centroids", np.asarray(source.read_array("base_centroids", mmap=False)))],
                        seconds=seconds, assigned_from=str(source.root.resolve()), threshold=threshold, threshold_source=threshold_source,
                        assigned=int(len(labels) - unassigned), unassigned=unassigned)
    store.mark_complete("name", fp, [store.write_table("base_clusters", base_clusters)], seconds=0.0, mode="inherited")
    level_counts = [sum(1 for lv in records["level"] if lv == level) for level in range(n_levels)]
    store.mark_complete("hierarchy", fp, [store.write_table("hierarchy", hierarchy), store.write_table("assignments", assignments)],
                        seconds=0.0, levels=n_levels, sizes=level_counts, mode="inherited")
    store.mark_complete("map", fp, [store.write_table("map", map_table)], seconds=0.0,
                        rule=f"mean position of the {MAP_NEIGHBOURS} nearest conversations of the original run's published base clusters")
    return fp, fp


def check_embedding_model(source: RunStore, embedder: Any) -> None:
    """The new data must be embedded by RUN's model: checked before anything is read or embedded. A run made with
    an injected embedder (`Pipeline(embedder=...)`, its name in the manifest's `components`) needs one of the same
    name passed again; a run of a configured model gets that model from RUN's configuration (assign_config)."""
    run_custom = (source.manifest.get("components") or {}).get("embedder")
    run_model = (source.stage_record("embed") or {}).get("model")
    if embedder is None:
        if run_custom:
            raise ConfigError(f"the run was embedded with an injected embedder named {run_custom!r}; pass the same embedder: "
                              "load_run(RUN).assign(NEW_INPUT, OUT, embedder=...) in Python (`convoscope assign` cannot load it)")
        return
    from convoscope.components import Components

    Components(embedder=embedder)  # its own checks: a `name` and an `encode` method
    if embedder.name != (run_custom or run_model):
        made_with = f"an injected embedder named {run_custom!r}" if run_custom else f"its configured model {run_model!r}"
        raise ConfigError(f"the run was embedded with {made_with}, the embedder passed is named {embedder.name!r}; they cannot be compared: "
                          + ("pass the embedder the run was made with" if run_custom else "leave out embedder= to use the run's model"))


def assign(run_dir: str | Path, new_input: str | Path | MemorySource, out_dir: str | Path, *, threshold: float | None = None,
           config_overrides: dict[str, Any] | None = None, show_progress: bool = True, console: Console | None = None,
           embedder: Any = None) -> RunStore:
    """Place the conversations of `new_input` (a file or directory, or conversations held in memory) into the
    finished run `run_dir`'s clusters and write a run directory `out_dir` with the usual published aggregates
    (module docstring). `embedder`: the injected embedder RUN was made with, if any. Returns its store."""
    source = _finished_run(run_dir)
    out = Path(out_dir)
    run_root = (source.parent.root if source.parent is not None else source.root).resolve()
    if out.resolve() in (source.root.resolve(), run_root) or run_root in out.resolve().parents:
        raise ConvoscopeError(f"{out}: NEW_RUN must be a new directory, not the run {run_dir} itself or a directory inside it")
    if (out / "manifest.json").exists() and "assigned_from" not in RunStore(out).manifest:
        raise ConvoscopeError(f"{out}: already holds a run made by `convoscope run`; choose another --out for the assigned data")
    from convoscope.pipeline import resolve_input

    input_path, input_label, memory = resolve_input(new_input)
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold {threshold}: a cosine similarity, between -1 and 1")
    config = assign_config(source, config_overrides)
    check_embedding_model(source, embedder)
    threshold_source = "given"
    if threshold is None:
        threshold, threshold_source = run_threshold(source), f"{THRESHOLD_PERCENTILE:g}th percentile of the run's own members' similarity to their centroid"

    # one process writes a run directory at a time (store.RunLock); taken after the checks above, so
    # a mistaken --out (RUN itself, a normal run) is refused without being touched
    with RunLock(out, console=console or Console(stderr=True)):
        store = _assign_into(source, input_path, input_label, memory, out, config, threshold, threshold_source, show_progress, console,
                             embedder)
        from convoscope.explorer.bundle import refresh_stale_explorers

        refresh_stale_explorers(store.root, console or Console(stderr=True))  # a page written before this rerun
        return store


def _assign_into(source: RunStore, input_path: Path, input_label: str, memory: MemorySource | None, out: Path, config: Config,
                 threshold: float, threshold_source: str, show_progress: bool, console: Console | None, embedder: Any = None) -> RunStore:
    from convoscope.components import Components
    from convoscope.pipeline import open_run
    from convoscope.stages.aggregates import run_aggregates
    from convoscope.stages.embed import run_embed
    from convoscope.stages.facets import run_facets
    from convoscope.stages.ingest import run_ingest
    from convoscope.stages.privacy import run_privacy
    from convoscope.stages.screen import run_screen

    assigned_from = {"run": str(source.root.resolve()), "threshold": threshold, "threshold_source": threshold_source,
                     "facet": config.facets.hierarchy_facets[0]}
    components = Components(embedder=embedder) if embedder is not None else None
    with open_run(input_path, input_label, out, config, console=console, show_progress=show_progress, memory=memory, components=components,
                  manifest={"hierarchy_facets": config.facets.hierarchy_facets, "assigned_from": assigned_from}) as ctx:
        fp = run_ingest(ctx)
        fp, selected = run_screen(ctx, fp)
        fp = run_facets(ctx, fp, selected)
        fp = run_embed(ctx, fp)
        model, run_model = (ctx.store.stage_record("embed") or {}).get("model"), (source.stage_record("embed") or {}).get("model")
        if run_model and model != run_model:
            raise ConfigError(f"the new data was embedded with {model}, the run with {run_model}; they cannot be compared")
        fp, map_fp = _place(ctx, source, fp, threshold, threshold_source)
        fp = run_privacy(ctx, fp)
        run_aggregates(ctx, fingerprint(fp, map_fp))
    return ctx.store
