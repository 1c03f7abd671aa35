"""Stage 6: organise the base clusters into a hierarchy, level by level up to the wanted top size.

Level sizes follow a geometric series between the base count and the top count. LLM mode runs the
paper's algorithm: neighbourhoods of about 40 clusters, propose parent names per neighbourhood,
deduplicate them, assign every child with the parent list shuffled, then rename each parent from the
children it received. Every level is one pass, so the build always terminates with the wanted number
of levels; every child gets exactly one parent and empty parents are dropped. Extractive mode cuts
one Ward dendrogram over the base clusters (their centroids and where their members' nearest
neighbours lie) at each level size and names parents by distinctive terms.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from convoscope import policy, prompts
from convoscope.context import RunContext
from convoscope.dp_kmeans import dp_fingerprint
from convoscope.keywords import class_tfidf_of_counts, group_term_counts, keyword_name, top_terms
from convoscope.llm.base import ChatMessage, LLMRequest
from convoscope.neighbours import cosine_knn
from convoscope.components import fingerprint_parts
from convoscope.hierarchy_levels import level_sizes
from convoscope.kmeans import kmeans
from convoscope.policy import NAME_WITHHELD
from convoscope.prompts import NAME_SCHEMA
from convoscope.text import clean_description, clean_name
from convoscope.stages.rows import analysed_rows, distinct_per_group
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage

NAMES_SCHEMA = {"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                "required": ["names"], "additionalProperties": False}
ASSIGN_SCHEMA = {"type": "object", "properties": {"scratchpad": {"type": "string"}, "parent": {"type": "string"}},
                 "required": ["scratchpad", "parent"], "additionalProperties": False}
OUTSIDE_NEIGHBOURS = 5  # clusters from outside a neighbourhood shown with it, as in the paper
# Extractive grouping: neighbours per conversation, searched among this many nearest clusters
# (measured on CLINC150: 20 candidate clusters come within 0.01 NMI of an exact search, 5 lose the gain).
LINK_NEIGHBOURS = 10
LINK_CANDIDATE_CLUSTERS = 20
# Changes when the extractive grouping changes, so older runs are rebuilt rather than resumed.
EXTRACTIVE_GROUPING = f"ward-centroids+neighbour-links:{LINK_NEIGHBOURS}/{LINK_CANDIDATE_CLUSTERS}"


@dataclass
class Node:
    id: str
    name: str
    description: str
    members: np.ndarray  # indices of the nodes one level down (or of conversations for base clusters)
    centroid: np.ndarray = field(repr=False, default=None)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _group_centroids(children: list[Node], sizes: np.ndarray, n_parents: int, seed: int) -> np.ndarray:
    centroids = np.vstack([c.centroid for c in children])
    labels, _ = kmeans(centroids, n_parents, seed, sample_weight=sizes.astype(np.float64))
    return labels


def neighbour_links(vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray, neighbours: int = LINK_NEIGHBOURS,
                    candidate_clusters: int = LINK_CANDIDATE_CLUSTERS) -> sp.csr_matrix:
    """Base clusters x base clusters: the share of each cluster's members' nearest neighbours that lie in
    each cluster (rows sum to 1).

    Two clusters whose conversations are each other's neighbours belong together even when their
    centroids are not the closest pair. The neighbours of a conversation are searched only among the
    members of the `candidate_clusters` clusters with the nearest centroids (true neighbours almost
    always lie there), so the cost is about conversations x candidate_clusters x cluster size."""
    k = len(centroids)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    members = [order[bounds[c]:bounds[c + 1]] for c in range(k)]
    near = np.argsort(-(centroids @ centroids.T), axis=1, kind="stable")[:, :min(candidate_clusters, k)]
    # Clusters in parallel threads (numpy releases the GIL), each product on one BLAS thread: the products are
    # small (a cluster by its candidates), and a threaded BLAS spent about half its CPU waking and spinning
    # its threads. Rows come back in cluster order, so the links do not depend on the thread count.
    # 100,000 conversations on 2 quiet cores: threaded BLAS 13.9-16.5 s wall / 27-32 CPU s, this 8.3-9.8 s / 16-19 s;
    # CLINC150 1.7 -> 1.0 s wall, links identical.
    def row(c: int) -> tuple[np.ndarray, np.ndarray]:
        if len(members[c]) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return _link_row(members[c], np.concatenate([members[j] for j in near[c]]), vectors, labels, neighbours, c, k)

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        found = list(pool.map(row, range(k)))
    rows = np.concatenate([np.full(len(hit), c) for c, (hit, _) in enumerate(found)])
    cols = np.concatenate([hit for hit, _ in found])
    shares = np.concatenate([share for _, share in found])
    return sp.csr_matrix((shares, (rows, cols)), shape=(k, k))


def _link_row(members: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, labels: np.ndarray,
              neighbours: int, cluster: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One row of `neighbour_links`: the clusters the members' nearest candidates lie in, and their shares."""
    m = min(neighbours, len(candidates) - 1)
    if m < 1:
        return np.array([cluster]), np.array([1.0])
    nearest, _ = cosine_knn(np.asarray(vectors[members]), np.asarray(vectors[candidates]), m + 1)
    hits = candidates[nearest]
    # a conversation is not its own neighbour: drop it, or the farthest of the m + 1 when it is absent
    keep = hits != members[:, None]
    keep[keep.all(axis=1), -1] = False
    found = np.bincount(labels[hits[keep]], minlength=k).astype(np.float64)
    hit = np.flatnonzero(found)
    return hit, found[hit] / found.sum()


def ward_cuts(centroids: np.ndarray, sizes: list[int], links: sp.csr_matrix | None = None) -> list[np.ndarray]:
    """Each base cluster's group when Ward's dendrogram over the base clusters is cut into each size.

    A base cluster is the point [unit centroid, sqrt(neighbour-link shares)]: adding where the members'
    nearest neighbours lie to the centroids gains 0.008 (CLINC150) and 0.014 (BANKING77) NMI over five
    seeds, which puts ours 0.020 above a plain k-means + Ward baseline on BANKING77 and level with it
    on CLINC150 (docs/evaluation.md; benchmarks/hierarchy_grouping.py measures it). Distances are computed
    from dot products (the link part is sparse), and cuts of one dendrogram are nested, so every level is
    a proper grouping of the level below."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    k = len(centroids)
    if k < 2:
        return [np.zeros(k, dtype=np.int64) for _ in sizes]
    c = centroids.astype(np.float64)
    norms = (c * c).sum(axis=1)
    squared = norms[:, None] + norms[None, :] - 2 * (c @ c.T)
    if links is not None:
        root = links.sqrt()
        bc = (root @ root.T).toarray()  # Bhattacharyya coefficients; each row of `root` has unit length
        squared += 2 - 2 * bc
    squared = np.maximum((squared + squared.T) / 2, 0)
    np.fill_diagonal(squared, 0)
    tree = linkage(squareform(np.sqrt(squared), checks=False), method="ward")
    return [np.unique(fcluster(tree, t=size, criterion="maxclust"), return_inverse=True)[1].reshape(-1) for size in sizes]


# ---------------------------------------------------------------------------------------------- LLM
def _naming_request(template: str, *, temperature: float, max_tokens: int, schema: dict, task: str, answer_check=None, **values) -> LLMRequest:
    """A hierarchy task's request: its static instructions after the naming rules as the system prompt
    (the same on every call), the clusters of this call as the user message."""
    return LLMRequest(messages=(ChatMessage("user", prompts.user_prompt(template, **values)),),
                      system=prompts.system_prompt(template, shared="naming_system"), temperature=temperature, max_tokens=max_tokens,
                      json_schema=schema, role="naming", task=task, answer_check=answer_check)


def _names_request(template: str, **values) -> LLMRequest:
    return _naming_request(template, temperature=1.0, max_tokens=1500, schema=NAMES_SCHEMA, task=template, **values)


def _describe(node: Node) -> str:
    return f"{node.name}: {node.description}"


def _llm_parents(ctx: RunContext, children: list[Node], desired: int, child_vecs: np.ndarray, embed,
                 publishable: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The paper's propose / dedupe / assign / rename for one level. Returns child->parent labels and parent names.

    Only `publishable` children (those that pass the privacy gates' deterministic checks) are shown
    to the model: a withheld child's name never reaches a parent's prompt, and such a child is
    placed under the parent nearest its embedding instead of by the model."""
    seed = ctx.config.seed
    n = len(children)
    n_hoods = max(1, round(n / ctx.config.hierarchy.neighbourhood_size))
    hood_labels, hood_centroids = kmeans(child_vecs, n_hoods, seed)
    # 1. propose candidates per neighbourhood (with a few nearest clusters from outside it)
    requests = []
    for h in range(len(hood_centroids)):
        inside = np.flatnonzero((hood_labels == h) & publishable)
        outside = np.flatnonzero((hood_labels != h) & publishable)
        if len(inside) == 0:
            continue
        near = outside[np.argsort(-(child_vecs[outside] @ hood_centroids[h]))[:OUTSIDE_NEIGHBOURS]] if len(outside) else outside
        want = max(1, round(desired * len(inside) / max(1, int(publishable.sum()))))
        shown = "\n".join(f"- {_describe(children[i])}" for i in np.concatenate([inside, near]))
        requests.append(_names_request("propose_parents", clusters=shown, desired=want, low=max(1, math.floor(want * 0.5)), high=max(1, math.ceil(want * 1.5))))
    candidates: list[str] = []
    for resp in ctx.complete_many(requests, description=f"Proposing {desired} parents"):
        if not resp.failed and isinstance(resp.parsed, dict):
            candidates.extend(clean_name(x) for x in resp.parsed["names"] if str(x).strip())
    candidates = list(dict.fromkeys(c for c in candidates if c))
    # 2. deduplicate across neighbourhoods; fall back to grouping the candidates by embedding
    low, high = max(1, math.floor(desired * 0.5)), max(1, math.ceil(desired * 1.5))
    parent_names: list[str] = []
    if len(candidates) > desired:
        resp = ctx.complete_many([_names_request("dedupe_parents", candidates="\n".join(f"- {c}" for c in candidates), desired=desired, low=low, high=high)],
                                 description="Deduplicating parents")[0]
        if not resp.failed and isinstance(resp.parsed, dict):
            parent_names = list(dict.fromkeys(clean_name(x) for x in resp.parsed["names"] if str(x).strip()))
        if not (low <= len(parent_names) <= high):
            cand_vecs = embed(candidates)
            labels, cents = kmeans(cand_vecs, min(desired, len(candidates)), seed)
            parent_names = [candidates[int(np.argmax(np.where(labels == g, cand_vecs @ cents[g], -np.inf)))] for g in range(len(cents))]
    else:
        parent_names = candidates
    if not parent_names:  # every proposal failed: group by embedding, named below by rename
        labels = _group_centroids(children, np.array([len(c.members) for c in children]), min(desired, n), seed)
        parent_names = [f"Group {g + 1}" for g in range(labels.max() + 1)]
    else:
        # 3. assign each child, parent list shuffled per request (the paper's guard against order bias)
        rng = np.random.default_rng(seed)
        parent_vecs = embed(parent_names)
        lookup = {p.lower(): i for i, p in enumerate(parent_names)}
        reqs = []
        shown = np.flatnonzero(publishable)
        for child in (children[i] for i in shown):
            order = rng.permutation(len(parent_names))
            reqs.append(_naming_request("assign_parent", temperature=0.2, max_tokens=300, schema=ASSIGN_SCHEMA, task="assign",
                                        child=_describe(child), parents="\n".join(f"- {parent_names[i]}" for i in order)))
        labels = np.empty(n, dtype=np.int64)
        answers = dict(zip(shown.tolist(), ctx.complete_many(reqs, description="Assigning clusters to parents"))) if reqs else {}
        hidden = np.flatnonzero(~publishable)
        if len(hidden):
            labels[hidden] = np.argmax(child_vecs[hidden] @ parent_vecs.T, axis=1)
        unmatched = []
        for i, resp in answers.items():
            choice = resp.parsed.get("parent") if (not resp.failed and isinstance(resp.parsed, dict)) else None
            idx = lookup.get(clean_name(choice).lower()) if choice else None
            if idx is None:
                unmatched.append(i)
            else:
                labels[i] = idx
        if unmatched:  # a name not in the list, or a failed call: the nearest parent by embedding
            answer_vecs = embed([str((answers[i].parsed or {}).get("parent") or _describe(children[i])) for i in unmatched])
            labels[unmatched] = np.argmax(answer_vecs @ parent_vecs.T, axis=1)
    # 4. drop empty parents, then rename each from the children it received
    used = np.unique(labels)
    remap = {int(old): new for new, old in enumerate(used)}
    labels = np.array([remap[int(x)] for x in labels])
    reqs = []
    for g in range(len(used)):
        kids = np.flatnonzero((labels == g) & publishable)
        if len(kids) == 0:  # nothing in it may be shown to the model
            continue
        reqs.append((g, _naming_request("rename_parent", temperature=1.0, max_tokens=200, schema=NAME_SCHEMA, task="rename",
                                        answer_check=prompts.name_answer_problem, children="\n".join(f"- {_describe(children[i])}" for i in kids))))
    names: list[tuple[str, str]] = [(NAME_WITHHELD, "")] * len(used)
    answers = ctx.complete_many([r for _, r in reqs], description="Renaming parents") if reqs else []
    for (g, _), resp in zip(reqs, answers):
        if not resp.failed and isinstance(resp.parsed, dict):
            names[g] = (clean_name(resp.parsed["name"]), clean_description(resp.parsed["description"]))
        else:
            names[g] = (parent_names[int(used[g])], "The naming model failed to describe this group.")
    return labels, names


# ------------------------------------------------------------------------------------------ build
class PromptGate:
    """Which clusters of a level may be shown to the naming model: those whose counts and texts pass
    the privacy gates' deterministic checks (convoscope.policy), before any auditor."""

    def __init__(self, ctx: RunContext) -> None:
        from convoscope.analysis_text import published_text_checker

        self.p = ctx.config.privacy
        rows = analysed_rows(ctx.store)
        _, self.account_index = np.unique(rows.accounts, return_inverse=True)
        self.account_index = self.account_index.reshape(-1)
        # The same checker as the privacy stage's (call buckets instead of accounts when facets calls were
        # shared), so the naming model never sees a name the release would withhold.
        self.checker = published_text_checker(ctx, self.account_index)

    def publishable(self, nodes: list[Node], conv_labels: np.ndarray, base: bool) -> np.ndarray:
        counts = policy.group_counts(conv_labels, self.account_index, len(nodes), self.p.max_conversations_per_account)
        # the same count gates as the privacy stage: the share cap for base clusters only
        gate = self.p if base else self.p.model_copy(update={"max_account_share": 1.0})
        order = np.argsort(conv_labels, kind="stable")
        bounds = np.searchsorted(conv_labels[order], np.arange(len(nodes) + 1))
        out = np.zeros(len(nodes), dtype=bool)
        self.checker.prepare([f"{node.name}\n{node.description}" for node in nodes])  # one pass over the texts for all
        for i, node in enumerate(nodes):
            if not policy.passes_size_gates(int(counts.size[i]), int(counts.accounts[i]), int(counts.bounded_size[i]), int(counts.top_account[i]), gate):
                continue
            out[i] = not self.checker.problems(f"{node.name}\n{node.description}", order[bounds[i]:bounds[i + 1]])
        return out


def build_hierarchy(ctx: RunContext) -> tuple[list[list[Node]], np.ndarray]:
    """Levels from the base up, and each conversation's base cluster."""
    config = ctx.config
    base = ctx.store.read_table("base_clusters").to_pylist()
    conv_labels = ctx.store.read_table("base_assignments", columns=["cluster"]).column("cluster").to_numpy().astype(np.int64)
    centroids = ctx.store.read_array("base_centroids", mmap=False)
    levels: list[list[Node]] = [[Node(b["id"], b["name"], b["description"], np.flatnonzero(conv_labels == i), centroids[i]) for i, b in enumerate(base)]]
    sizes = level_sizes(len(base), config.hierarchy)
    embedder = None
    term_counts = terms = None
    dp_mode = config.privacy.mode == "dp"  # DP mode (engineer E): the tree from the DP centroids only, named by the privacy stage
    if config.llm_mode and not dp_mode:
        from convoscope.components import embedder_for

        embedder = embedder_for(ctx)  # an injected embedder names parents in its own space too
        prompt_gate = PromptGate(ctx)
    elif not dp_mode:
        term_counts, terms = _base_term_counts(ctx, len(base))
    cuts = None
    if dp_mode and len(sizes) > 1:
        cuts = ward_cuts(centroids, sizes[1:])  # no neighbour links: they come from conversations, not from DP releases
    elif not config.llm_mode and len(sizes) > 1:
        vectors = np.asarray(ctx.store.read_array("embeddings", mmap=True))
        with ctx.console.status(f"Grouping {len(base):,} base clusters by their members' nearest neighbours"):
            cuts = ward_cuts(centroids, sizes[1:], neighbour_links(vectors, conv_labels, centroids))
    representative = np.arange(len(base))  # one base cluster inside each node of the current level
    for height, desired in enumerate(sizes[1:], start=1):
        children = levels[-1]
        child_sizes = np.array([_conversation_count(levels, height - 1, i) for i in range(len(children))])
        if config.llm_mode and not dp_mode:
            child_vecs = embedder.encode([_describe(c) for c in children])
            publishable = prompt_gate.publishable(children, _conversation_labels(levels, height - 1), base=height == 1)
            labels, names = _llm_parents(ctx, children, desired, child_vecs, embedder.encode, publishable)
        else:
            labels = np.unique(cuts[height - 1][representative], return_inverse=True)[1].reshape(-1)
            names = [("", "")] * (labels.max() + 1)
        parents = []
        for g in range(labels.max() + 1):
            kids = np.flatnonzero(labels == g)
            weights = child_sizes[kids].astype(np.float32)[:, None]
            centroid = _normalise((np.vstack([children[i].centroid for i in kids]) * weights).sum(axis=0))
            parents.append(Node(f"p{height}-{g}", names[g][0], names[g][1], kids, centroid))
        representative = np.array([representative[p.members[0]] for p in parents])
        if term_counts is not None:
            base_parent = _base_labels(levels + [parents], height)
            scores = class_tfidf_of_counts(group_term_counts(term_counts, base_parent, len(parents)))
            for g, p in enumerate(parents):
                p.name, p.description = keyword_name(top_terms(scores, terms, g, 5))
        levels.append(parents)
    return levels, conv_labels


def _base_term_counts(ctx: RunContext, k: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """The naming stage's counts of k-anonymous terms per base cluster, as a matrix, and the terms."""
    table = ctx.store.read_table("base_term_counts")
    terms, term_index = np.unique(np.array(table.column("term").to_pylist(), dtype=object), return_inverse=True)
    counts = sp.csr_matrix((table.column("count").to_numpy(), (table.column("cluster").to_numpy(), term_index.reshape(-1))), shape=(k, len(terms)))
    return counts, terms


def _base_labels(levels: list[list[Node]], height: int) -> np.ndarray:
    """Each base cluster's node index at `height` (0 = base)."""
    labels = np.arange(len(levels[0]))
    for h in range(1, height + 1):
        up = np.empty(len(levels[h - 1]), dtype=np.int64)
        for g, p in enumerate(levels[h]):
            up[p.members] = g
        labels = up[labels]
    return labels


def _conversation_labels(levels: list[list[Node]], height: int) -> np.ndarray:
    """Each conversation's cluster index at `height` (0 = base)."""
    base = levels[0]
    n = sum(len(b.members) for b in base)
    labels = np.empty(n, dtype=np.int64)
    for i, b in enumerate(base):
        labels[b.members] = i
    return _base_labels(levels, height)[labels]


def _conversation_count(levels: list[list[Node]], height: int, index: int) -> int:
    node = levels[height][index]
    if height == 0:
        return len(node.members)
    return sum(_conversation_count(levels, height - 1, int(i)) for i in node.members)


@dataclass(frozen=True)
class HierarchyRecord(StageRecord):
    levels: int
    sizes: list[int]  # clusters per level, top (level 0) first


def _settings(ctx: RunContext) -> tuple:
    config = ctx.config
    return (fingerprint_parts(ctx, "embedder") if config.llm_mode else (), config.hierarchy.model_dump(), config.seed,
            config.llm.spec_for("naming") if config.llm_mode else EXTRACTIVE_GROUPING,
            [prompts.load(t).template for t in ("naming_system", "propose_parents", "dedupe_parents", "assign_parent", "rename_parent")] if config.llm_mode else None,
            config.privacy.model_dump(exclude={"include_raw_text", "scrub_identifiers", "min_audit_score"}) if config.llm_mode else None, "gated-prompts",
            *dp_fingerprint(config))


def _hierarchy(ctx: RunContext) -> StageOutput[HierarchyRecord]:
    levels, _ = build_hierarchy(ctx)
    rows = analysed_rows(ctx.store)
    n_levels = len(levels)
    records = {k: [] for k in ("id", "level", "parent", "name", "description", "size", "accounts")}
    assignment_cols: dict[str, list] = {}
    for height, nodes in enumerate(levels):
        conv_labels = _conversation_labels(levels, height)
        sizes = np.bincount(conv_labels, minlength=len(nodes))
        accounts = distinct_per_group(conv_labels, rows.accounts, len(nodes))
        parent_of = {}
        if height + 1 < n_levels:
            for p in levels[height + 1]:
                for i in p.members:
                    parent_of[int(i)] = p.id
        for i, node in enumerate(nodes):
            records["id"].append(node.id)
            records["level"].append(n_levels - 1 - height)
            records["parent"].append(parent_of.get(i))
            records["name"].append(node.name)
            records["description"].append(node.description)
            records["size"].append(int(sizes[i]))
            records["accounts"].append(int(accounts[i]))
        ids = np.array([n.id for n in nodes], dtype=object)
        assignment_cols[f"level_{n_levels - 1 - height}"] = ids[conv_labels].tolist()
    clusters = pa.table({**records, "level": pa.array(records["level"], type=pa.int32()), "size": pa.array(records["size"], type=pa.int64()),
                         "accounts": pa.array(records["accounts"], type=pa.int64())})
    assignments = pa.table({"conv_id": rows.conv_ids, **{f"level_{l}": assignment_cols[f"level_{l}"] for l in range(n_levels)}})
    artifacts = [ctx.store.write_table("hierarchy", clusters), ctx.store.write_table("assignments", assignments)]
    return StageOutput(artifacts, HierarchyRecord(levels=n_levels, sizes=[len(l) for l in reversed(levels)]))


HIERARCHY = Stage("hierarchy", _settings, _hierarchy)


def run_hierarchy(ctx: RunContext, upstream: str) -> str:
    return run_stage(HIERARCHY, ctx, upstream)
