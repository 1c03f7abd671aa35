"""The privacy and aggregates stages in differential privacy mode (`privacy.mode = "dp"`).

Everything published is computed from DP releases (convoscope.dp) and post-processing of them:

- **Which clusters exist.** The candidate clusters come from DP k-means (convoscope.dp_kmeans) and
  the tree over them from their centroids alone (the hierarchy's DP branch). A node is published when
  its noisy account count reaches `dp.publish_threshold` (min_accounts plus two noise deviations) and
  its noisy size `min_conversations`, and its parent is published.
- **Sizes and account counts.** Noisy conversations per base cluster (each account at most
  `max_conversations_per_account` of them, so the sensitivity is that cap); a parent's size is the sum
  of its children's, so the tree adds up. Noisy distinct accounts for every node at every level (an
  account is in at most `cap` nodes per level). "Other (withheld)" rows are sums of withheld children.
- **Words.** Per base cluster, the accounts using each term (at most `TERMS_PER_CONVERSATION` distinct
  terms per conversation) go through OpenDP's Gaussian threshold mechanism (partition selection): a
  term few accounts used is dropped with probability 1 - delta. Names are class-based TF-IDF over the
  released counts (extractive) or written by the naming model from the released keywords and counts
  only (LLM mode, prompt `dp_name_cluster`); parents add up their children's released counts.
- **Breakdowns and timelines.** Per base cluster and cell of a public domain (language names, turn
  bins, concern 1-5, a custom facet's choices or bins), noisy counts; time buckets (months) by
  partition selection. Parents and remainders are sums of their parts.
- **Not released:** metadata fields (their names and values are not a public domain), map positions
  of conversations (the explorer gets one position per cluster, from the DP centroids).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from convoscope import dp, policy
from convoscope.context import RunContext
from convoscope.stages.rows import analysed_rows

OTHER_NAME = "Other (withheld)"
OTHER_DESCRIPTION = "Conversations in clusters too small to show under the privacy budget."
MAX_CATEGORIES = 12
NO_VALUE = "\x00none"  # a conversation without a value: counted, never a shown cell
TURN_VALUES = {"1": 1.0, "2": 2.0, "3": 3.0, "4-5": 4.5, "6+": 6.0}  # means from the released histogram
COUNT_SHARES = {"sizes": 0.4, "accounts": 0.5, "run_accounts": 0.1}  # of the cluster_counts share


class Tree:
    """The hierarchy table, its levels and each conversation's base cluster, with the DP bounding."""

    def __init__(self, ctx: RunContext) -> None:
        self.budget = dp.budget_for(ctx)
        self.rows = ctx.store.read_table("hierarchy").to_pylist()
        self.n_levels = max(r["level"] for r in self.rows) + 1
        self.index = {r["id"]: i for i, r in enumerate(self.rows)}
        self.parent = [self.index.get(r["parent"]) if r["parent"] is not None else None for r in self.rows]
        self.children: dict[int | None, list[int]] = defaultdict(list)
        for i, par in enumerate(self.parent):
            self.children[par].append(i)
        self.base = [i for i, r in enumerate(self.rows) if r["level"] == self.n_levels - 1]
        self.base_pos = {row: b for b, row in enumerate(self.base)}
        assignments = ctx.store.read_table("assignments")
        conv = analysed_rows(ctx.store)
        self.conv_ids = conv.conv_ids
        self.conv_table = conv.table
        _, account_index = np.unique(conv.accounts, return_inverse=True)
        self.account_index = account_index.reshape(-1)
        self.bounded = dp.bounded_mask(self.conv_ids, self.account_index, self.budget.cap, ctx.config.seed)
        base_ids = assignments.column(f"level_{self.n_levels - 1}").to_pylist()
        self.conv_base = np.fromiter((self.base_pos[self.index[c]] for c in base_ids), dtype=np.int64, count=len(base_ids))
        # each node's base clusters (by position in self.base)
        self.base_of: dict[int, list[int]] = {}
        for i in sorted(range(len(self.rows)), key=lambda i: -self.rows[i]["level"]):
            self.base_of[i] = [self.base_pos[i]] if i in self.base_pos else [b for c in self.children[i] for b in self.base_of[c]]
        self.by_level = sorted(range(len(self.rows)), key=lambda i: self.rows[i]["level"])


def _round(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.rint(x), 0).astype(np.int64)


# ------------------------------------------------------------------------------------ privacy stage
def dp_privacy(ctx: RunContext) -> tuple[pa.Table, dict[str, Any]]:
    """The `clusters` table in DP mode, and the record's figures."""
    p = ctx.config.privacy
    t = Tree(ctx)
    b = t.budget
    cap = b.cap
    share = b.rho_of("cluster_counts")
    kept = t.bounded
    n_base = len(t.base)
    # conversations per base cluster
    sizes = _round(b.gaussian("cluster_counts", np.bincount(t.conv_base[kept], minlength=n_base).astype(float), cap,
                              share * COUNT_SHARES["sizes"]))
    # distinct accounts of every node (each level at once: an account is in at most `cap` nodes of a level)
    pairs = set()
    for row, account in zip(t.conv_base[kept].tolist(), t.account_index[kept].tolist()):
        node = t.base[row]
        while node is not None:
            pairs.add((node, account))
            node = t.parent[node]
    true_accounts = np.bincount(np.fromiter((n for n, _ in pairs), dtype=np.int64, count=len(pairs)), minlength=len(t.rows)).astype(float)
    acc_sensitivity = float(np.sqrt(cap * t.n_levels))
    acc_rho = share * COUNT_SHARES["accounts"]
    noisy_accounts = _round(b.gaussian("cluster_counts", true_accounts, acc_sensitivity, acc_rho))
    run_accounts = int(_round(b.gaussian("cluster_counts", np.array([len(np.unique(t.account_index))], dtype=float), 1.0,
                                         share * COUNT_SHARES["run_accounts"]))[0])
    node_size = {i: int(sizes[t.base_of[i]].sum()) for i in range(len(t.rows))}
    # post-processing: a node has no more accounts than conversations, nor than the run has
    node_accounts = {i: int(min(noisy_accounts[i], node_size[i], run_accounts)) for i in range(len(t.rows))}
    threshold = dp.publish_threshold(p.min_accounts, dp.gaussian_scale(acc_sensitivity, acc_rho))

    shown: dict[int, bool] = {}
    reasons: dict[int, str | None] = {}
    for i in t.by_level:
        par = t.parent[i]
        if par is not None and not shown[par]:
            reasons[i] = "an ancestor is withheld"
        elif node_accounts[i] < threshold:
            reasons[i] = f"noisy account count below {threshold:.1f} (min_accounts plus two noise deviations)"
        elif node_size[i] < p.min_conversations:
            reasons[i] = f"noisy size below {p.min_conversations} conversations"
        else:
            reasons[i] = None
        shown[i] = reasons[i] is None

    names, vocabulary = _dp_names(ctx, t, shown)
    out: dict[str, list] = {k: [] for k in ("id", "level", "parent", "kind", "name", "description", "size", "accounts", "published",
                                             "withheld_reason", "audit_score", "audit_reason")}

    def add(**row: Any) -> None:
        for key in out:
            out[key].append(row.get(key))

    for i, r in enumerate(t.rows):
        add(id=r["id"], level=r["level"], parent=r["parent"], kind="cluster", name=names[i][0], description=names[i][1],
            size=node_size[i], accounts=node_accounts[i], published=shown[i], withheld_reason=reasons[i])
    for par in [None] + [i for i in t.by_level if shown[i] and t.rows[i]["level"] < t.n_levels - 1]:
        hidden = [k for k in t.children[par] if not shown[k]]
        size = sum(node_size[k] for k in hidden)
        if size:
            pid = None if par is None else t.rows[par]["id"]
            add(id="other" if pid is None else f"{pid}/other", level=0 if par is None else t.rows[par]["level"] + 1, parent=pid, kind="other",
                name=OTHER_NAME, description=OTHER_DESCRIPTION, size=size, accounts=min(size, sum(node_accounts[k] for k in hidden)),
                published=True, withheld_reason=None)
    table = pa.table({**out, "level": pa.array(out["level"], type=pa.int32()), "size": pa.array(out["size"], type=pa.int64()),
                      "accounts": pa.array(out["accounts"], type=pa.int64()), "audit_score": pa.array(out["audit_score"], type=pa.int8())})
    record = {"withheld_clusters": sum(1 for v in shown.values() if not v), "published_clusters": sum(shown.values()),
              "run_accounts": run_accounts, "released_terms": vocabulary, "rho_spent": dict(b.spent), "delta_spent": dict(b.spent_delta),
              "privacy_guarantee": b.guarantee()}  # the split, in the manifest too
    return table, record


def conversation_terms(texts, limit: int = dp.TERMS_PER_CONVERSATION) -> list[list[str]]:
    """Each text's first `limit` distinct terms (lowercase words of the extractive vocabulary, no digits)."""
    from sklearn.feature_extraction.text import CountVectorizer

    from convoscope.keywords import STOP_WORDS, TOKEN_PATTERN

    analyse = CountVectorizer(stop_words=STOP_WORDS, token_pattern=TOKEN_PATTERN, lowercase=True).build_analyzer()
    return [list(dict.fromkeys(analyse(text or "")))[:limit] for text in texts]


def _dp_names(ctx: RunContext, t: Tree, shown: dict[int, bool]) -> tuple[list[tuple[str, str]], int]:
    """Names of every node from the DP-released terms; the number of released (cluster, term) pairs."""
    from convoscope.analysis_text import analysis_texts
    from convoscope.keywords import class_tfidf_of_counts, keyword_name, top_terms
    from convoscope.person_names import is_name_shaped_term

    p = ctx.config.privacy
    b = t.budget
    texts = list(analysis_texts(ctx))
    terms_of = conversation_terms(texts[i] if t.bounded[i] else "" for i in range(len(texts)))
    del texts
    users: dict[str, set] = defaultdict(set)
    for i in np.flatnonzero(t.bounded).tolist():
        for term in terms_of[i]:
            users[f"{t.conv_base[i]}\t{term}"].add(int(t.account_index[i]))
    released, _, _ = b.select_keys("vocabulary", {k: len(v) for k, v in users.items()}, l0=b.cap * dp.TERMS_PER_CONVERSATION, linf=1)
    del users
    cells = [(int(k.split("\t", 1)[0]), k.split("\t", 1)[1], v) for k, v in released.items()]
    # a person-like term needs the public-figure count even after selection (post-processing)
    cells = [(c, term, v) for c, term, v in cells if v >= p.public_figure_accounts or not is_name_shaped_term(term)]
    terms = np.array(sorted({term for _, term, _ in cells}), dtype=object)
    col = {term: j for j, term in enumerate(terms.tolist())}
    base_counts = sp.csr_matrix((np.array([v for *_, v in cells], dtype=np.float32),
                                 (np.array([c for c, _, _ in cells], dtype=np.int64), np.array([col[term] for _, term, _ in cells], dtype=np.int64))),
                                shape=(len(t.base), len(terms)))
    names: list[tuple[str, str]] = [("", "")] * len(t.rows)
    node_counts: dict[int, sp.csr_matrix] = {}
    for level in range(t.n_levels):
        nodes = [i for i in range(len(t.rows)) if t.rows[i]["level"] == level]
        stacked = sp.vstack([sp.csr_matrix(base_counts[t.base_of[i]].sum(axis=0)) for i in nodes]).tocsr() if len(terms) else sp.csr_matrix((len(nodes), 0))
        scores = class_tfidf_of_counts(stacked) if len(terms) else stacked
        for j, i in enumerate(nodes):
            node_counts[i] = stacked.getrow(j)
            chosen = top_terms(scores, terms, j, 5) if len(terms) else []
            names[i] = keyword_name(chosen) if chosen else (policy.NAME_WITHHELD, "")
    if ctx.config.llm_mode and ctx.llm is not None and len(terms):
        names = _llm_names(ctx, [i for i in range(len(t.rows)) if shown[i]], node_counts, terms, names)
    return names, len(cells)


def _llm_names(ctx: RunContext, nodes: list[int], node_counts: dict[int, sp.csr_matrix], terms: np.ndarray,
               names: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """LLM mode: names written only from each node's released keywords and their noisy counts. A name
    whose capitalised words or numbers are not among those keywords (or our prompt's words) keeps the
    extractive name; the privacy auditor still rates it (post-processing of DP output either way)."""
    from convoscope import prompts
    from convoscope.llm.base import ChatMessage, LLMRequest
    from convoscope.prompts import NAME_SCHEMA
    from convoscope.stages.privacy import audit_request
    from convoscope.text import clean_description, clean_name

    allowed_prompt = {policy._norm(w) for w in policy.prompt_vocabulary()}
    asks, keywords_of = [], {}
    for i in nodes:
        row = node_counts[i]
        order = row.indices[np.argsort(-row.data)][:20]
        if not len(order):
            continue
        keywords_of[i] = {policy._norm(str(terms[j])) for j in order}
        listing = "\n".join(f"- {terms[j]} (~{int(round(float(row[0, j])))})" for j in order)
        asks.append((i, LLMRequest(messages=(ChatMessage("user", prompts.user_prompt("dp_name_cluster", keywords=listing)),),
                                   system=prompts.system_prompt("dp_name_cluster"), temperature=0.0, max_tokens=300,
                                   json_schema=NAME_SCHEMA, role="naming", task="dp_name")))
    answers = ctx.complete_many([r for _, r in asks], description="Naming clusters from DP keywords") if asks else []
    written: list[tuple[int, str, str]] = []
    for (i, _), resp in zip(asks, answers):
        if resp.failed or not isinstance(resp.parsed, dict):
            continue
        name, desc = clean_name(resp.parsed["name"]), clean_description(resp.parsed["description"])
        words = {policy._norm(w) for w in policy.checked_tokens(f"{name}\n{desc}")}
        if words <= keywords_of[i] | allowed_prompt:
            written.append((i, name, desc))
    audits = ctx.complete_many([audit_request(n, d) for _, n, d in written], description="Privacy audit") if written else []
    out = list(names)
    for (i, name, desc), resp in zip(written, audits):
        if not resp.failed and isinstance(resp.parsed, dict) and int(resp.parsed["score"]) >= ctx.config.privacy.min_audit_score:
            out[i] = (name, desc)
    return out


# --------------------------------------------------------------------------------- aggregates stage
def _public_facets(ctx: RunContext, t: Tree) -> tuple[dict[str, tuple[list[Any], list[str], dict[str, float] | None]], dict[str, str]]:
    """Facets with a public domain: name -> (per-conversation cell, the domain, numeric value of each
    cell or None); and the facets left out, with why."""
    from convoscope.languages import NAMES

    config = ctx.config
    facets = ctx.store.read_table("facets")
    out: dict[str, tuple[list[Any], list[str], dict[str, float] | None]] = {}
    out["language"] = (facets.column("language").to_pylist(), sorted(set(NAMES.values())), None)
    turns = t.conv_table.column("n_turns").to_pylist()
    turn_bins = {1: "1", 2: "2", 3: "3", 4: "4-5", 5: "4-5"}
    out["turns"] = ([None if v is None else turn_bins.get(int(v), "6+") for v in turns], list(TURN_VALUES), TURN_VALUES)
    if config.llm_mode:
        concern = [None if v is None else str(int(v)) for v in facets.column("concerning").to_pylist()]
        out["concerning"] = (concern, ["1", "2", "3", "4", "5"], {str(v): float(v) for v in range(1, 6)})
    for facet in config.facets.custom:
        col = facets.column(f"facet.{facet.name}").to_pylist()
        if facet.type == "category":
            out[facet.name] = ([None if v is None else str(v) for v in col], list(facet.choices or []), None)
        elif facet.type == "number":
            assert facet.min is not None and facet.max is not None  # the config requires them for a number facet
            low, high = float(facet.min), float(facet.max)
            step = (high - low) / 5
            edges = [low + i * step for i in range(1, 5)]
            labels = policy.bin_labels(edges)
            values = np.array([np.nan if v is None else float(v) for v in col])
            mids = [low + step / 2 + i * step for i in range(5)]
            out[facet.name] = (policy.bin_of(values, edges), labels, dict(zip(labels, mids)))
    unavailable = {"metadata": "not released in DP mode: metadata field names and values are not a public domain"}
    return out, unavailable


def _noisy_breakdowns(t: Tree, cells: list[Any], domain: list[str], rho: float, sizes: np.ndarray) -> list[dict[str, int]]:
    """Per base cluster: released cells (noisy count clearly above the noise), the rest in "other"
    so that the cells add up to the cluster's released size."""
    b = t.budget
    col = {c: j for j, c in enumerate(domain)}
    none_col = len(domain)
    counts = np.zeros((len(t.base), len(domain) + 1))
    for i in np.flatnonzero(t.bounded).tolist():
        counts[t.conv_base[i], col.get(cells[i], none_col) if cells[i] is not None else none_col] += 1
    noisy = b.gaussian("breakdowns", counts, b.cap, rho)
    # a cell is shown when its noisy count is unlikely to be noise alone: about 5% chance that any of the
    # domain's empty cells shows, per cluster (post-processing: the guarantee holds for any floor)
    floor = float(NormalDist().inv_cdf(1 - 0.05 / max(len(domain), 1))) * dp.gaussian_scale(b.cap, rho)
    out = []
    for row, size in zip(noisy, sizes.tolist()):
        shown = {domain[j]: int(round(v)) for j, v in enumerate(row[:-1]) if v >= floor}
        shown = dict(sorted(shown.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES])
        total = sum(shown.values())
        if total > size:  # noise can make the cells exceed the size: scale them down (post-processing)
            shown = {k: int(v * size / total) for k, v in shown.items()}
            total = sum(shown.values())
        shown = {k: v for k, v in shown.items() if v > 0}
        if size - total > 0:
            shown[policy.OTHER] = int(size - total)
        out.append(shown)
    return out


def _noisy_timelines(t: Tree, rho_unused: None = None) -> tuple[list[dict[str, int]], float]:
    """Per base cluster: released month buckets (partition selection over (cluster, month) keys)."""
    b = t.budget
    created = t.conv_table.column("created_at").to_pylist()
    counts: dict[str, int] = defaultdict(int)
    for i in np.flatnonzero(t.bounded).tolist():
        if created[i] is not None:
            counts[f"{t.conv_base[i]}\t{policy.bucket_start(created[i], 'month')}"] += 1
    released, _, threshold = b.select_keys("timeline", counts, l0=b.cap, linf=b.cap)
    out: list[dict[str, int]] = [{} for _ in t.base]
    for key, v in released.items():
        base, bucket = key.split("\t", 1)
        if round(v) > 0:
            out[int(base)][bucket] = int(round(v))
    return out, threshold


def _positions(ctx: RunContext, t: Tree, node_size: dict[int, int]) -> dict[int, tuple[float, float]]:
    """One map position per node: base clusters at a 2-D PCA of their (DP) centroids, parents at the
    size-weighted mean of their children."""
    centroids = np.asarray(ctx.store.read_array("base_centroids", mmap=False), dtype=np.float64)
    c = centroids - centroids.mean(axis=0)
    if len(c) >= 2:
        _, _, vt = np.linalg.svd(c, full_matrices=False)
        xy = c @ vt[:2].T
        xy = xy / max(float(np.abs(xy).max()), 1e-12) * 10
    else:
        xy = np.zeros((len(c), 2))
    pos = {}
    for i in sorted(range(len(t.rows)), key=lambda i: -t.rows[i]["level"]):
        bases = t.base_of[i]
        w = np.array([max(node_size.get(t.base[bb], 0), 1) for bb in bases], dtype=float)
        pos[i] = (round(float((xy[bases, 0] * w).sum() / w.sum()), 4), round(float((xy[bases, 1] * w).sum() / w.sum()), 4))
    return pos


def dp_aggregates(ctx: RunContext) -> tuple[dict[str, Any], pa.Table]:
    """The release in DP mode: the same shape as threshold mode's, from DP releases only."""
    config = ctx.config
    t = Tree(ctx)
    b = t.budget
    clusters = ctx.store.read_table("clusters").to_pylist()
    by_id = {c["id"]: c for c in clusters}
    node_size = {i: int(by_id[r["id"]]["size"]) for i, r in enumerate(t.rows)}
    base_sizes = np.array([node_size[i] for i in t.base], dtype=np.int64)

    facets, unavailable = _public_facets(ctx, t)
    rho_each = b.rho_of("breakdowns") / max(len(facets), 1)
    base_cells = {name: _noisy_breakdowns(t, cells, domain, rho_each, base_sizes) for name, (cells, domain, _) in facets.items()}
    # always released (empty without dates): whether the input has dates at all must not depend on one account
    base_timeline, _ = _noisy_timelines(t)
    has_times = any(base_timeline)
    privacy_record = ctx.store.stage_record("privacy") or {}
    dp_record = privacy_record.get("dp") or {}

    def numbers(bases: list[int]) -> dict[str, Any]:
        return {"cat": {name: policy.add_breakdowns((base_cells[name][bb] for bb in bases), MAX_CATEGORIES) for name in facets},
                "timeline": policy.add_breakdowns(base_timeline[bb] for bb in bases)}

    positions = _positions(ctx, t, node_size)
    published = [c for c in clusters if (c["kind"] == "cluster" and c["published"]) or c["kind"] == "other"]
    out_clusters = []
    for c in published:
        if c["kind"] == "cluster":
            i = t.index[c["id"]]
            bases = t.base_of[i]
        else:
            parent = t.index.get(c["parent"]) if c["parent"] is not None else None
            hidden = [k for k in t.children[parent] if not by_id[t.rows[k]["id"]]["published"]]
            bases = [bb for k in hidden for bb in t.base_of[k]]
        num = numbers(bases)
        facet_data: dict[str, Any] = {}
        for name, (_, _, values) in facets.items():
            cells = num["cat"][name]
            if not cells:
                continue
            if values is None:
                facet_data[name] = cells
            else:
                valued = {k: v for k, v in cells.items() if k in values}
                n = sum(valued.values())
                if n:
                    facet_data[name] = {"mean": round(sum(values[k] * v for k, v in valued.items()) / n, 3), "n": n, "hist": cells}
        timeline = sorted((k, v) for k, v in num["timeline"].items() if k != policy.OTHER)
        dated = sum(v for _, v in timeline)
        if dated > int(c["size"]):  # noise can make the buckets exceed the size: scale them down (post-processing)
            timeline = [(k, int(v * int(c["size"]) / dated)) for k, v in timeline]
            timeline = [(k, v) for k, v in timeline if v > 0]
        pos = positions.get(t.index[c["id"]]) if c["kind"] == "cluster" else None
        out_clusters.append({
            "id": c["id"], "level": c["level"], "parent": c["parent"], "kind": c["kind"], "name": c["name"], "description": c["description"],
            "size": int(c["size"]), "accounts": int(c["accounts"]), "x": pos[0] if pos else None, "y": pos[1] if pos else None,
            "audit": None, "facets": facet_data, "timeline": timeline if has_times else None,
            "timeline_suppressed": max(0, int(c["size"]) - sum(v for _, v in timeline)) if has_times else None,
        })
    total = sum(c["size"] for c in out_clusters if c["parent"] is None)
    policy.link_published(out_clusters, total)
    buckets = [bk for c in out_clusters if c["level"] == 0 for bk, _ in c.get("timeline") or []]
    hierarchy = ctx.store.stage_record("hierarchy") or {}
    ingest_report = (ctx.store.stage_record("ingest") or {}).get("report") or {}
    no_accounts = ingest_report.get("account_ids") == "absent" or bool(ingest_report.get("missing_account"))
    p = config.privacy
    guarantee = b.guarantee()
    guarantee["rho_spent"] = {"privacy stage": dp_record.get("rho_spent"), "aggregates stage": dict(b.spent)}
    facet_list = [{"name": n, "kind": "category" if values is None else "number", **({"min": 1, "max": 5} if n == "concerning" else {})}
                  for n, (_, _, values) in facets.items()]
    aggregates = {
        "run": {
            "mode": "llm" if config.llm_mode else "extractive", "facet": ctx.hierarchy_facet,
            "conversations": int(total), "accounts": int(dp_record.get("run_accounts") or 0),
            "account_ids": "absent" if no_accounts else "present", "levels": t.n_levels, "level_sizes": hierarchy.get("sizes"),
            "min_accounts": p.min_accounts, "min_conversations": p.min_conversations,
            "max_conversations_per_account": p.max_conversations_per_account, "max_account_share": None,
            "embedding_model": (ctx.store.stage_record("embed") or {}).get("model"),
            "time_range": [min(buckets), max(buckets)] if buckets else None, "time_unit": "month" if has_times else None,
            "privacy": "dp",
        },
        "privacy_guarantee": guarantee,
        "facets": facet_list,
        "facets_unavailable": {**dict((ctx.store.stage_record("facets") or {}).get("unavailable") or {}), **unavailable},
        "clusters": out_clusters,
        "withheld": {"clusters": sum(1 for c in clusters if c["kind"] == "cluster" and not c["published"]),
                     "conversations": int(sum(c["size"] for c in out_clusters if c["kind"] == "other"))},
    }
    points = pa.table({"x": pa.array([], type=pa.float32()), "y": pa.array([], type=pa.float32()),
                       **{f"level_{level}": pa.array([], type=pa.string()) for level in range(t.n_levels)}})
    return aggregates, points
