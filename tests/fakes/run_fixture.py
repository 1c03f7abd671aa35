"""A fake but schema-exact run directory for the explorer (see docs/architecture.md).

`make_run(tmp_dir, n_points=2000, levels=3, seed=0)` writes, through `RunStore`:

- json `aggregates` and table `points` (the published data the explorer may read), with a few top
  clusters, their children, a top-level "other (withheld)" bucket, language / concerning / turns /
  meta.category / boolean meta.flagged facets, weekly timelines and null levels where a cluster is
  withheld; planted analysis signals (when levels > 1): `RISER_ID` grows sharply in the second half
  of the time range, `MISS_ID` has high concern but few flags (a likely classifier miss) and
  `FALSE_ALARM_ID` many flags but low concern (a likely false alarm); topic 2 is over-represented
  in Japanese;
- internal tables (`conversations`, `assignments`, `clusters`, `facets`, `map`) holding planted
  strings (`PLANTED_*` below) that must never reach the explorer.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from convoscope.store import RunStore

PLANTED_WITHHELD_NAME = "PLANTED-WITHHELD Rare diagnosis of Jane Q Example"
PLANTED_WITHHELD_DESCRIPTION = "PLANTED-WITHHELD-DESC users describing a private medical history"
PLANTED_CONV_PREFIX = "conv-PLANTED-"
PLANTED_ACCOUNT_PREFIX = "acct-PLANTED-"
PLANTED_TEXT = "PLANTED-RAW-TEXT my social security number is 078-05-1120"
# A published cluster name with markup in it: the explorer must show it as text, never run it.
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1"> Tags & "quotes" </script>'

TOP_TOPICS = [
    ("Software development", "Writing, debugging and reviewing code in many languages."),
    ("Writing and editing", "Drafting, rewriting and proofreading prose for work and school."),
    ("Data analysis", "Cleaning data, statistics and building charts."),
    ("Education and tutoring", "Explaining concepts in maths, science and history."),
    ("Business and marketing", "Emails, plans, product copy and strategy."),
    ("Creative writing", "Stories, poems, role-play and world-building."),
    ("Health and wellbeing", "General questions about fitness, food and sleep."),
    ("Travel planning", "Itineraries, bookings and local tips."),
]
SUB_WORDS = ["basics", "advanced topics", "troubleshooting", "reviews", "planning", "tools"]
LANGUAGES = ["English", "Spanish", "Japanese", "German", "French", "Portuguese"]
META_CATEGORIES = ["web", "mobile", "api"]
RISER_ID = "c1-0L1"        # most of its conversations fall in the second half of the run
MISS_ID = "c3-0L1"         # mean concern >= 3, flag rate < 20%
FALSE_ALARM_ID = "c4-1L1"  # flag rate >= 50%, mean concern < 2


def _hist_turns(turns: np.ndarray) -> dict[str, int]:
    out = {"1": int((turns == 1).sum()), "2": int((turns == 2).sum()), "3+": int((turns >= 3).sum())}
    return {k: v for k, v in out.items() if v}


def _facets(idx: np.ndarray, lang: np.ndarray, concern: np.ndarray, turns: np.ndarray, meta: np.ndarray,
            with_concerning: bool, flagged: np.ndarray) -> dict:
    counts: dict[str, int] = {}
    for code, n in zip(*np.unique(lang[idx], return_counts=True)):
        counts[LANGUAGES[int(code)]] = int(n)
    # categories held by few accounts are merged into "other" (here: fewer than 5 conversations)
    merged = {k: v for k, v in counts.items() if v >= 5}
    if sum(merged.values()) < len(idx):
        merged["other"] = len(idx) - sum(merged.values())
    mcounts = {META_CATEGORIES[int(c)]: int(n) for c, n in zip(*np.unique(meta[idx], return_counts=True))}
    out: dict = {
        "language": dict(sorted(merged.items(), key=lambda kv: -kv[1])),
        "turns": {"mean": round(float(turns[idx].mean()), 3), "hist": _hist_turns(turns[idx])},
        "meta.category": mcounts,
        "meta.flagged": {k: v for k, v in (("true", int(flagged[idx].sum())),
                                            ("false", int((~flagged[idx]).sum()))) if v},
    }
    if with_concerning:
        c = concern[idx]
        out["concerning"] = {"mean": round(float(c.mean()), 3),
                             "hist": {str(v): int((c == v).sum()) for v in range(1, 6) if (c == v).any()}}
    return out


def _timeline(days: np.ndarray, start: dt.date) -> list[list]:
    weeks = days // 7
    out = []
    for w in range(int(weeks.max()) + 1 if len(weeks) else 0):
        out.append([(start + dt.timedelta(days=7 * w)).isoformat(), int((weeks == w).sum())])
    return out


def make_run(tmp_dir: str | Path, n_points: int = 2000, levels: int = 3, seed: int = 0, *,
             n_top: int = 6, with_concerning: bool = True, hostile_name: bool = True) -> Path:
    """Write a valid run directory into `tmp_dir` and return its path."""
    assert levels >= 1
    rng = np.random.default_rng(seed)
    root = Path(tmp_dir)
    store = RunStore(root, create=True)
    n = int(n_points)
    start = dt.date(2024, 1, 1)

    # ---- a synthetic hierarchy: n_top top clusters, 3 children each per level --------------------
    fan = 3
    n_other = max(1, n // 40)  # conversations in the top-level "other (withheld)" bucket
    n_main = n - n_other
    top_weights = rng.dirichlet(np.ones(n_top) * 3)
    top = rng.choice(n_top, size=n_main, p=top_weights)
    path = np.zeros((n_main, levels), dtype=np.int64)  # cluster number within parent per level
    path[:, 0] = top
    for lv in range(1, levels):
        w = rng.dirichlet(np.ones(fan) * 2, size=n_top * fan ** (lv - 1))
        parent_flat = path[:, 0].copy()
        for k in range(1, lv):
            parent_flat = parent_flat * fan + path[:, k]
        # draw child by parent's weights
        u = rng.random(n_main)
        cw = np.cumsum(w[parent_flat], axis=1)
        path[:, lv] = (u[:, None] > cw).sum(axis=1).clip(0, fan - 1)

    def cid(row: np.ndarray, lv: int) -> str:
        return "c" + "-".join(str(int(v)) for v in row[: lv + 1]) + f"L{lv}"

    ids = np.empty((n_main, levels), dtype=object)
    for i in range(n_main):
        for lv in range(levels):
            ids[i, lv] = cid(path[i], lv)

    # ---- positions: top clusters on a circle, children around their parent ----------------------
    xy = np.zeros((n_main, 2))
    centre = {}
    for i in range(n_main):
        key = ()
        pos = np.zeros(2)
        for lv in range(levels):
            key = key + (int(path[i, lv]),)
            if key not in centre:
                if lv == 0:
                    a = 2 * np.pi * key[0] / n_top
                    centre[key] = np.array([np.cos(a), np.sin(a)]) * 6
                else:
                    a = rng.uniform(0, 2 * np.pi)
                    centre[key] = centre[key[:-1]] + np.array([np.cos(a), np.sin(a)]) * (2.2 / (lv * 1.3))
            pos = centre[key]
        xy[i] = pos + rng.normal(0, 0.35, 2)
    other_xy = rng.normal(0, 2.5, (n_other, 2))
    all_xy = np.vstack([xy, other_xy]).astype(np.float32)

    # ---- facets per conversation ----------------------------------------------------------------
    lang_p = np.array([0.6, 0.12, 0.1, 0.08, 0.06, 0.04])
    lang = rng.choice(len(LANGUAGES), size=n, p=lang_p)
    # topic 2 is over-represented in Japanese
    jp = np.where((np.arange(n) < n_main) & (np.r_[top, np.full(n_other, -1)] == 2) & (rng.random(n) < 0.4))[0]
    lang[jp] = 2
    concern = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.7, 0.15, 0.08, 0.05, 0.02])
    concern[np.r_[top, np.full(n_other, -1)] == 6 % n_top] += rng.integers(0, 2, size=int((np.r_[top, np.full(n_other, -1)] == 6 % n_top).sum()))
    concern = concern.clip(1, 5)
    turns = rng.geometric(0.5, size=n)
    meta = rng.choice(len(META_CATEGORIES), size=n)
    days = rng.integers(0, 56, size=n)

    # ---- planted analysis signals, from a separate generator so the draws above stay as they were --
    rng2 = np.random.default_rng(seed + 7919)
    top_all = np.r_[top, np.full(n_other, -1)]
    child_all = np.r_[path[:, 1], np.full(n_other, -1)] if levels > 1 else np.full(n, -1)
    in_c = lambda t, k: (top_all == t) & (child_all == k)  # noqa: E731
    flag_p = np.where(concern >= 4, 0.85, np.where(concern == 3, 0.4, 0.04))
    if levels > 1:
        miss, fa, riser = in_c(3, 0), in_c(4, 1), in_c(1, 0)
        concern[miss] = rng2.choice([3, 4, 5], size=int(miss.sum()), p=[0.3, 0.4, 0.3])
        flag_p[miss] = 0.05
        concern[fa] = rng2.choice([1, 2], size=int(fa.sum()), p=[0.8, 0.2])
        flag_p[fa] = 0.75
        late = riser & (rng2.random(n) < 0.9)
        days[late] = 28 + rng2.integers(0, 28, size=int(late.sum()))
    flagged = rng2.random(n) < flag_p

    # ---- withheld: one base cluster (the largest-index child of top 0) ---------------------------
    withheld_id = cid(np.array([0] + [fan - 1] * (levels - 1)), levels - 1) if levels > 1 else None

    # ---- clusters --------------------------------------------------------------------------------
    members: dict[str, np.ndarray] = {}
    for lv in range(levels):
        col = ids[:, lv]
        for u in np.unique(col):
            members[u] = np.where(col == u)[0]
    other_members = np.arange(n_main, n)

    clusters = []
    internal = []
    level_ids = [[] for _ in range(levels)]
    for u in sorted(members, key=lambda s: (int(s.rsplit("L", 1)[1]), s)):
        lv = int(u.rsplit("L", 1)[1])
        level_ids[lv].append(u)
    names: dict[str, tuple[str, str]] = {}
    for lv in range(levels):
        for u in level_ids[lv]:
            parts = [int(v) for v in u[1:].rsplit("L", 1)[0].split("-")]
            tname, tdesc = TOP_TOPICS[parts[0] % len(TOP_TOPICS)]
            if lv == 0:
                names[u] = (tname, tdesc)
            else:
                word = SUB_WORDS[(parts[-1] + lv) % len(SUB_WORDS)]
                pname = names[cid(np.array(parts[:-1]), lv - 1)][0]
                names[u] = (f"{pname.split(':')[0]}: {word} ({'.'.join(str(p + 1) for p in parts[1:])})",
                            f"Conversations about {tname.lower()} focused on {word}.")
    if hostile_name and levels > 1:
        victim = level_ids[1][0]
        names[victim] = (HOSTILE_NAME, "A name with markup & an ampersand, <b>not bold</b>.")
    names[withheld_id] = (PLANTED_WITHHELD_NAME, PLANTED_WITHHELD_DESCRIPTION) if withheld_id else None

    accounts = np.array([f"{PLANTED_ACCOUNT_PREFIX}{i:05d}" for i in rng.integers(0, max(10, n // 3), size=n)])
    conv_ids = np.array([f"{PLANTED_CONV_PREFIX}{i:07d}" for i in range(n)])

    def parent_of(u: str) -> str | None:
        lv = int(u.rsplit("L", 1)[1])
        if lv == 0:
            return None
        parts = u[1:].rsplit("L", 1)[0].split("-")
        return "c" + "-".join(parts[:-1]) + f"L{lv - 1}"

    published = {u for u in members if u != withheld_id}
    for u in sorted(members, key=lambda s: (int(s.rsplit("L", 1)[1]), s)):
        idx = members[u]
        lv = int(u.rsplit("L", 1)[1])
        name, desc = names[u]
        acc = int(len(set(accounts[idx].tolist())))
        internal.append({"id": u, "level": lv, "parent": parent_of(u), "name": name, "description": desc,
                         "size": int(len(idx)), "accounts": acc, "published": u in published,
                         "withheld_reason": None if u in published else "fewer than 5 accounts",
                         "audit_score": 2 if u not in published else 4, "audit_reason": "fixture"})
        if u not in published:
            continue
        children = [c for c in members if parent_of(c) == u and c in published]
        c = {
            "id": u, "level": lv, "parent": parent_of(u), "kind": "cluster", "name": name, "description": desc,
            "size": int(len(idx)), "accounts": acc, "share": round(len(idx) / n, 6),
            "children": sorted(children, key=lambda k: -len(members[k])),
            "x": round(float(all_xy[idx, 0].mean()), 4), "y": round(float(all_xy[idx, 1].mean()), 4),
            "facets": _facets(idx, lang, concern, turns, meta, with_concerning, flagged),
            "timeline": _timeline(days[idx], start),
        }
        if lv == levels - 1:
            c["audit"] = {"score": 4 + int(len(idx) % 2), "reason": "No personal details; broad topic."}
        clusters.append(c)
    other = {
        "id": "other-L0", "level": 0, "parent": None, "kind": "other", "name": "Other (withheld)",
        "description": "Conversations in clusters too small to publish.",
        "size": int(len(other_members)), "accounts": int(len(set(accounts[other_members].tolist()))),
        "share": round(len(other_members) / n, 6), "children": [],
        "x": round(float(all_xy[other_members, 0].mean()), 4), "y": round(float(all_xy[other_members, 1].mean()), 4),
        "facets": _facets(other_members, lang, concern, turns, meta, with_concerning, flagged),
        "timeline": _timeline(days[other_members], start),
    }
    clusters.append(other)

    facets = [{"name": "language", "kind": "category"}]
    unavailable = {"meta.source": "field not present in the input"}
    if with_concerning:
        facets.append({"name": "concerning", "kind": "number", "min": 1, "max": 5})
    else:
        unavailable["concerning"] = "needs an LLM (run with --llm)"
    facets += [{"name": "turns", "kind": "number"}, {"name": "meta.category", "kind": "category"},
               {"name": "meta.flagged", "kind": "category"}]
    n_withheld = len(members[withheld_id]) if withheld_id else 0
    aggregates = {
        "run": {"mode": "llm" if with_concerning else "extractive", "facet": "request", "conversations": n,
                "accounts": int(len(set(accounts.tolist()))), "levels": levels, "min_accounts": 5,
                "min_conversations": 15, "embedding_model": "fake-embedder",
                "time_range": [f"{start.isoformat()}T00:00:00Z", f"{(start + dt.timedelta(days=55)).isoformat()}T23:59:59Z"]},
        "facets": facets,
        "facets_unavailable": unavailable,
        "clusters": clusters,
        "withheld": {"clusters": 1 + (1 if n_other else 0), "conversations": int(n_withheld + n_other)},
    }

    # ---- points: published ids, null where withheld -------------------------------------------
    cols: dict[str, list] = {}
    for lv in range(levels):
        col = [u if u in published else None for u in ids[:, lv]]
        col += ["other-L0" if lv == 0 else None] * n_other
        cols[f"level_{lv}"] = col
    points = pa.table({"x": pa.array(all_xy[:, 0], pa.float32()), "y": pa.array(all_xy[:, 1], pa.float32()),
                       **{k: pa.array(v, pa.string()) for k, v in cols.items()}})

    # ---- internal tables with planted strings -------------------------------------------------
    created = [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=int(d)) for d in days]
    conversations = pa.table({
        "conv_id": conv_ids, "account": accounts,
        "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
        "n_messages": pa.array(turns * 2, pa.int32()), "n_turns": pa.array(turns, pa.int32()),
        "user_chars": pa.array(rng.integers(10, 2000, n), pa.int32()),
        "assistant_chars": pa.array(rng.integers(10, 4000, n), pa.int32()),
        "metadata": [f'{{"category": "{META_CATEGORIES[m]}", "note": "{PLANTED_TEXT}"}}' for m in meta],
    })
    facets_t = pa.table({"conv_id": conv_ids, "request": [PLANTED_TEXT] * n, "task": [None] * n,
                         "language": [LANGUAGES[i] for i in lang], "concerning": pa.array(concern, pa.int64()),
                         "failed": [False] * n})
    assign_cols = {f"level_{lv}": list(ids[:, lv]) + [f"small-{i % 7}L{lv}" for i in range(n_other)] for lv in range(levels)}
    assignments = pa.table({"conv_id": conv_ids, **assign_cols})
    clusters_t = pa.Table.from_pylist(internal)
    map_t = pa.table({"conv_id": conv_ids, "x": pa.array(all_xy[:, 0]), "y": pa.array(all_xy[:, 1])})

    arts = {
        "ingest": [store.write_table("conversations", conversations)],
        "facets": [store.write_table("facets", facets_t)],
        "hierarchy": [store.write_table("assignments", assignments)],
        "privacy": [store.write_table("clusters", clusters_t)],
        "map": [store.write_table("map", map_t)],
        "aggregates": [store.write_json("aggregates", aggregates), store.write_table("points", points)],
    }
    for stage, art in arts.items():
        store.mark_complete(stage, f"fixture-{stage}-{seed}", art, seconds=0.0)
    store.update_manifest(fixture=True, input="fixture")
    return root


if __name__ == "__main__":  # pragma: no cover - handy for manual runs
    import sys

    out = make_run(sys.argv[1], n_points=int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
    print(out)
