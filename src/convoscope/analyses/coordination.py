"""`analyze coordination`: signals of coordinated or automated use that no single conversation shows.

Three signals, each reported per published cluster with its evidence numbers, never with account
ids, conversation ids or text:

(a) concentration: clusters where few accounts produce many conversations: conversations per account
    (and its ratio to the run's overall rate), and the share of the cluster's conversations that come
    from its single most active account (and from its top 3). Computed from the internal
    `conversations`/`assignments` tables at every level, reported for published clusters only.
(b) templates: near-identical requests from many accounts, found by embedding similarity rather than
    string equality. Within each base cluster, a greedy leader grouping: the conversation with the most
    neighbours at cosine >= `similarity` leads a group of those neighbours; repeat on the rest. Every
    member is within `similarity` of its leader. A group is reported when it has at least `min_group`
    conversations and at least max(`min_template_accounts`, the run's `min_accounts`) distinct
    accounts, under the finest published cluster that contains it (the cluster name, never the text).
(c) bursts: a cluster's count in one time bucket (the aggregates' timeline: day, week or month) far
    above its baseline. The baseline is leave-one-out and follows overall volume: the cluster's share
    of all conversations outside the bucket times all conversations in the bucket (all = the published
    clusters of the same level). z = (count - baseline) / sqrt(max(baseline, 1)) (Poisson), with the Poisson tail
    probability P(X >= count). Reported when z >= `burst_z` and count >= `min_burst`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from convoscope.analyses.common import ConversationView, Run, conversation_view, fmt_p, label, pct, poisson_sf


# -- (a) concentration -----------------------------------------------------------------------------

def concentration(run: Run, view: ConversationView, top_share: float = 0.25, rate_ratio: float = 3.0) -> list[dict[str, Any]]:
    n_total = len(view)
    overall_rate = n_total / max(1, len(set(view.accounts.tolist())))
    rows = []
    for level in range(run.levels):
        col = view.cluster[level]
        per: dict[str, Counter] = {}
        for cid, acc in zip(col, view.accounts):
            if cid is not None:
                per.setdefault(cid, Counter())[acc] += 1
        for cid, counts in per.items():
            size = sum(counts.values())
            top = [n for _, n in counts.most_common(3)]
            rate = size / len(counts)
            row = {"id": cid, "name": run.by_id[cid]["name"], "level": level, "conversations": size, "accounts": len(counts),
                   "conversations_per_account": rate, "rate_vs_overall": rate / overall_rate if overall_rate else None,
                   "top_account_share": top[0] / size, "top3_account_share": sum(top) / size}
            row["flagged"] = bool(row["top_account_share"] >= top_share or (row["rate_vs_overall"] or 0) >= rate_ratio)
            rows.append(row)
    rows.sort(key=lambda r: (-r["top_account_share"], -r["conversations"]))
    return rows


# -- (b) templates ---------------------------------------------------------------------------------

def leader_groups(vectors: np.ndarray, similarity: float, min_group: int, block: int = 2048) -> list[np.ndarray]:
    """Greedy leader grouping of L2-normalised rows: groups of >= min_group rows within `similarity` of a leader."""
    m = len(vectors)
    if m < min_group:
        return []
    neighbours: list[np.ndarray] = []
    v = np.asarray(vectors, dtype=np.float32)
    for start in range(0, m, block):
        sims = v[start:start + block] @ v.T
        neighbours.extend(np.flatnonzero(row >= similarity) for row in sims)
    free = np.ones(m, dtype=bool)
    groups = []
    while True:
        degree = np.fromiter((free[nb].sum() if free[i] else 0 for i, nb in enumerate(neighbours)), dtype=np.int64, count=m)
        leader = int(degree.argmax())
        if degree[leader] < min_group:  # degree counts the leader itself
            break
        members = neighbours[leader][free[neighbours[leader]]]
        free[members] = False
        groups.append(members)
    return groups


def templates(run: Run, view: ConversationView, similarity: float = 0.95, min_group: int = 10, min_template_accounts: int = 5) -> list[dict[str, Any]]:
    embeddings = run.store.read_array("embeddings")
    if len(embeddings) != len(view):
        return []
    min_acc = max(min_template_accounts, int(run.info.get("min_accounts") or 1))
    finest = view.finest_published()
    base = view.raw_cluster[run.base_level]
    out = []
    order = np.argsort(base.astype(str), kind="stable")
    ids = base[order]
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:]):
        rows = order[s:e]
        for group in leader_groups(np.asarray(embeddings[np.sort(rows)]), similarity, min_group):
            members = np.sort(rows)[group]
            accounts = len(set(view.accounts[members].tolist()))
            where = finest[members[0]]
            if accounts < min_acc or where is None:
                continue
            c = run.by_id[where]
            out.append({"id": where, "name": c["name"], "level": c["level"], "group_size": int(len(members)), "accounts": accounts,
                        "share_of_cluster": len(members) / c["size"], "conversations_per_account": len(members) / accounts})
    out.sort(key=lambda r: (-r["accounts"], -r["group_size"]))
    return out


# -- (c) bursts ------------------------------------------------------------------------------------

def bursts(run: Run, burst_z: float = 4.0, min_burst: int = 10) -> dict[str, Any]:
    unit = run.info.get("time_unit")
    if not unit:
        return {"available": False, "reason": "the run has no conversation timestamps", "bursts": []}
    out = []
    for level in range(run.levels):
        clusters = [c for c in run.clusters(level) if c.get("timeline")]
        series = {c["id"]: {b: int(n) for b, n in c["timeline"]} for c in clusters}
        totals: Counter = Counter()
        for s in series.values():
            totals.update(s)
        grand = sum(totals.values())
        for c in clusters:
            s = series[c["id"]]
            size = sum(s.values())
            for bucket, count in s.items():
                if count < min_burst:
                    continue
                outside = grand - totals[bucket]
                if outside <= 0:
                    continue
                baseline = (size - count) / outside * totals[bucket]
                lam = max(baseline, 1.0)
                z = (count - lam) / np.sqrt(lam)
                if z >= burst_z:
                    out.append({"id": c["id"], "name": c["name"], "level": level, "bucket": bucket, "unit": unit, "count": count,
                                "baseline": round(baseline, 2), "z": float(z), "p": poisson_sf(count, lam), "cluster_size": size})
    out.sort(key=lambda r: -r["z"])
    return {"available": True, "unit": unit, "bursts": out}


def coordination(run: Run, *, top_share: float = 0.25, rate_ratio: float = 3.0, similarity: float = 0.95, min_group: int = 10,
                 min_template_accounts: int = 5, burst_z: float = 4.0, min_burst: int = 10, top: int = 15) -> dict[str, Any]:
    view = conversation_view(run)
    conc = concentration(run, view, top_share, rate_ratio)
    overall_rate = len(view) / max(1, len(set(view.accounts.tolist())))
    return {
        "analysis": "coordination",
        "conversations": len(view),
        "overall_conversations_per_account": overall_rate,
        "concentration": {"rule": f"top account >= {top_share:.0%} of the cluster, or conversations per account >= {rate_ratio:g}x the run's rate",
                          "clusters": [r for r in conc if r["flagged"]][:top]},
        "templates": {"rule": f"groups of >= {min_group} conversations within cosine {similarity} of a leader in one base cluster, "
                              f"from >= {max(min_template_accounts, int(run.info.get('min_accounts') or 1))} accounts",
                      "groups": templates(run, view, similarity, min_group, min_template_accounts)[:top]},
        "bursts": {**(b := bursts(run, burst_z, min_burst)), "rule": f"z >= {burst_z:g} and count >= {min_burst}", "bursts": b["bursts"][:top]},
    }


def print_coordination(result: dict[str, Any], console: Console) -> None:
    conc = result["concentration"]
    t = Table(title="(a) Concentration: few accounts, many conversations")
    for col, j in (("cluster", "left"), ("level", "right"), ("conversations", "right"), ("accounts", "right"), ("conv./account", "right"),
                   ("vs run", "right"), ("top account", "right"), ("top 3", "right")):
        t.add_column(col, justify=j)
    for r in conc["clusters"]:
        t.add_row(label(r, 50), str(r["level"]), f"{r['conversations']:,}", f"{r['accounts']:,}", f"{r['conversations_per_account']:.1f}",
                  f"{r['rate_vs_overall']:.1f}x", pct(r["top_account_share"]), pct(r["top3_account_share"]))
    console.print(t if conc["clusters"] else "(a) Concentration: no published cluster is dominated by few accounts.")
    console.print(f"[dim]rule: {conc['rule']}; run overall: {result['overall_conversations_per_account']:.1f} conversations per account[/]")

    tmpl = result["templates"]
    t = Table(title="(b) Near-identical requests from many accounts (embedding similarity)")
    for col, j in (("cluster", "left"), ("level", "right"), ("group size", "right"), ("accounts", "right"), ("share of cluster", "right")):
        t.add_column(col, justify=j)
    for r in tmpl["groups"]:
        t.add_row(label(r, 50), str(r["level"]), f"{r['group_size']:,}", f"{r['accounts']:,}", pct(r["share_of_cluster"]))
    console.print(t if tmpl["groups"] else "(b) Templates: no group of near-identical requests from many accounts.")
    console.print(f"[dim]rule: {tmpl['rule']}[/]")

    b = result["bursts"]
    if not b["available"]:
        console.print(f"(c) Bursts: unavailable ({b['reason']}).")
        return
    t = Table(title=f"(c) Bursts in time (per {b['unit']})")
    for col, j in (("cluster", "left"), ("level", "right"), ("bucket", "left"), ("count", "right"), ("baseline", "right"), ("z", "right"), ("p", "right")):
        t.add_column(col, justify=j)
    for r in b["bursts"]:
        t.add_row(label(r, 50), str(r["level"]), r["bucket"], f"{r['count']:,}", f"{r['baseline']:.1f}", f"{r['z']:.1f}", fmt_p(r["p"]))
    console.print(t if b["bursts"] else "(c) Bursts: none.")
    console.print(f"[dim]rule: {b['rule']}; baseline = cluster's share outside the bucket x all conversations in the bucket[/]")
