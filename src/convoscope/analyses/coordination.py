"""`analyze coordination`: signals of coordinated or automated use that no single conversation shows.

Three signals, each reported per published cluster with its evidence numbers, never with account
ids, conversation ids or text:

(a) concentration: published clusters where few accounts produce many conversations: conversations per
    account (and its ratio to the run's overall rate), from the published counts only. No per-account
    figure is reported: a cluster that one account dominates is withheld by the privacy gates.
(b) templates: near-identical requests from many accounts, found by embedding similarity rather than
    string equality. Within each base cluster, a greedy leader grouping: the conversation with the most
    neighbours at cosine >= 0.95 leads a group of those neighbours; repeat on the rest. Every member is
    within 0.95 of its leader (fixed: two thresholds' groups could be subtracted). A group is reported
    when it has at least 10
    conversations and at least max(`min_template_accounts`, the run's `min_accounts`) distinct
    accounts and passes the run's count gates, inside a published base cluster (its name, never the text).
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

from convoscope import policy
from convoscope.analyses.common import ConversationView, Run, conversation_view, fmt_p, label, pct, poisson_sf
from convoscope.config import PrivacySettings


# -- (a) concentration -----------------------------------------------------------------------------

def concentration(run: Run, rate_ratio: float = 3.0) -> list[dict[str, Any]]:
    """Published clusters whose conversations per account are far above the run's, from published
    counts only (no per-account figure: a cluster one account dominates is withheld by the gates)."""
    n_conv, n_acc = int(run.info["conversations"]), int(run.info["accounts"])
    overall_rate = n_conv / max(1, n_acc)
    rows = []
    for c in run.clusters():
        if not c.get("accounts"):
            continue
        rate = c["size"] / c["accounts"]
        row = {"id": c["id"], "name": c["name"], "level": c["level"], "conversations": c["size"], "accounts": c["accounts"],
               "conversations_per_account": rate, "rate_vs_overall": rate / overall_rate if overall_rate else None}
        row["flagged"] = bool((row["rate_vs_overall"] or 0) >= rate_ratio)
        rows.append(row)
    rows.sort(key=lambda r: (-(r["rate_vs_overall"] or 0), -r["conversations"]))
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


# Fixed, not options: two groupings of one cluster at different thresholds differ by a few conversations,
# and subtracting them would isolate those (review of 2026-11-30).
TEMPLATE_SIMILARITY = 0.95
TEMPLATE_MIN_GROUP = 10


def templates(run: Run, view: ConversationView, min_template_accounts: int = 5) -> list[dict[str, Any]]:
    """Groups inside published base clusters only, each passing the run's count gates itself (it is a
    published number about its members)."""
    embeddings = run.store.read_array("embeddings")
    if len(embeddings) != len(view):
        return []
    min_acc = max(min_template_accounts, int(run.info.get("min_accounts") or 1))
    settings = _gate_settings(run)
    base = view.cluster[run.base_level]  # published base cluster ids, None where withheld
    out = []
    published = np.fromiter((b is not None for b in base), dtype=bool, count=len(base))
    order = np.flatnonzero(published)[np.argsort(base[published].astype(str), kind="stable")]
    ids = base[order]
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    for s, e in zip(bounds[:-1], bounds[1:]):
        rows = order[s:e]
        for group in leader_groups(np.asarray(embeddings[np.sort(rows)]), TEMPLATE_SIMILARITY, TEMPLATE_MIN_GROUP):
            members = np.sort(rows)[group]
            where = base[members[0]]
            if where is None:
                continue
            accounts = len(set(view.accounts[members].tolist()))
            if accounts < min_acc or policy.group_gate_reason(view.accounts[members], settings) is not None:
                continue
            c = run.by_id[where]
            # the cluster minus the group would be published too: when that rest is too small to pass the
            # gates, say only that the group is nearly the whole cluster, without its counts
            rest = np.setdiff1d(rows, members)
            if len(rest) and policy.group_gate_reason(view.accounts[rest], settings, share_cap=False) is not None:
                out.append({"id": where, "name": c["name"], "level": c["level"], "group_size": None, "accounts": None,
                            "share_of_cluster": None, "conversations_per_account": None, "extent": "nearly all of the cluster"})
                continue
            out.append({"id": where, "name": c["name"], "level": c["level"], "group_size": int(len(members)), "accounts": accounts,
                        "share_of_cluster": len(members) / c["size"], "conversations_per_account": len(members) / accounts,
                        "extent": "all of the cluster" if not len(rest) else "part of the cluster"})
    out.sort(key=lambda r: (-(r["accounts"] or run.by_id[r["id"]]["accounts"]), -(r["group_size"] or run.by_id[r["id"]]["size"])))
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


def _gate_settings(run: Run) -> PrivacySettings:
    info = run.info
    return PrivacySettings(min_accounts=int(info.get("min_accounts") or 5), min_conversations=int(info.get("min_conversations") or 15),
                           max_conversations_per_account=int(info.get("max_conversations_per_account") or 3),
                           max_account_share=float(info.get("max_account_share") or 0.5))


def coordination(run: Run, *, rate_ratio: float = 3.0, min_template_accounts: int = 5, burst_z: float = 4.0, min_burst: int = 10,
                 top: int = 15) -> dict[str, Any]:
    view = conversation_view(run, "coordination")
    conc = concentration(run, rate_ratio)
    overall_rate = int(run.info["conversations"]) / max(1, int(run.info["accounts"]))
    return {
        "analysis": "coordination",
        "conversations": int(run.info["conversations"]),
        "overall_conversations_per_account": overall_rate,
        "concentration": {"rule": f"conversations per account >= {rate_ratio:g}x the run's rate (a cluster one account dominates "
                                  f"is withheld by the privacy gates, so it never appears here)",
                          "clusters": [r for r in conc if r["flagged"]][:top]},
        "templates": {"rule": f"groups of >= {TEMPLATE_MIN_GROUP} conversations within cosine {TEMPLATE_SIMILARITY} of a leader in one base cluster, "
                              f"from >= {max(min_template_accounts, int(run.info.get('min_accounts') or 1))} accounts",
                      "groups": templates(run, view, min_template_accounts)[:top]},
        "bursts": {**(b := bursts(run, burst_z, min_burst)), "rule": f"z >= {burst_z:g} and count >= {min_burst}", "bursts": b["bursts"][:top]},
    }


def print_coordination(result: dict[str, Any], console: Console) -> None:
    conc = result["concentration"]
    t = Table(title="(a) Concentration: few accounts, many conversations")
    for col, j in (("cluster", "left"), ("level", "right"), ("conversations", "right"), ("accounts", "right"), ("conv./account", "right"),
                   ("vs run", "right")):
        t.add_column(col, justify=j)
    for r in conc["clusters"]:
        t.add_row(label(r, 50), str(r["level"]), f"{r['conversations']:,}", f"{r['accounts']:,}", f"{r['conversations_per_account']:.1f}",
                  f"{r['rate_vs_overall']:.1f}x")
    console.print(t if conc["clusters"] else "(a) Concentration: no published cluster is dominated by few accounts.")
    console.print(f"[dim]rule: {conc['rule']}; run overall: {result['overall_conversations_per_account']:.1f} conversations per account[/]")

    tmpl = result["templates"]
    t = Table(title="(b) Near-identical requests from many accounts (embedding similarity)")
    for col, j in (("cluster", "left"), ("level", "right"), ("group size", "right"), ("accounts", "right"), ("share of cluster", "right")):
        t.add_column(col, justify=j)
    for r in tmpl["groups"]:
        if r["group_size"] is None:
            t.add_row(label(r, 50), str(r["level"]), "—", "—", r["extent"])
        else:
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
