"""Build the explorer's data payload and its self-contained HTML page.

Privacy contract: the payload is built from the run's *published* data only — json `aggregates` and
table `points` (see docs/architecture.md) — and every field is copied through an allow-list, so a
field added upstream by mistake (an id, a sample, a withheld name) does not reach the page. Points
carry no ids: only quantised x/y and the index of their published cluster per level, and they are
re-ordered (sorted by cluster and position), so row order cannot be joined back to internal tables.
"""

from __future__ import annotations

import base64
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.markup import escape

from convoscope.errors import ConvoscopeError
from convoscope.report import run_warnings
from convoscope.store import RunStore
from convoscope.text import clean_text

PAYLOAD_VERSION = 1
NULL16 = 0xFFFF
NULL32 = 0xFFFFFFFF

_RUN_KEYS = ("mode", "facet", "conversations", "accounts", "levels", "min_accounts", "min_conversations",
             "embedding_model", "time_range", "time_unit", "level_sizes", "account_ids")
_CLUSTER_KEYS = ("id", "level", "parent", "kind", "name", "description", "size", "accounts", "share",
                 "children", "x", "y")
# The privacy guarantee a release states (issue 16): configuration, not data; copied through this allow-list.
_GUARANTEE_TEXT_KEYS = ("mode", "unit")
_GUARANTEE_NUM_KEYS = ("epsilon", "delta", "min_accounts", "min_conversations", "max_conversations_per_account", "hierarchies")


def _asset(name: str) -> str:
    return resources.files("convoscope.explorer").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def _num(v: Any) -> float | int | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)) and math.isfinite(v):
        return v
    return None


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def _clean_facet(kind: str | None, value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    if kind == "number" or ("mean" in value and "hist" in value):
        hist = value.get("hist") or {}
        out = {"mean": _num(value.get("mean")),
               "hist": {str(k): int(v) for k, v in hist.items() if _num(v) is not None}}
        if _num(value.get("n")) is not None:
            out["n"] = int(value["n"])
        return out
    return {str(k): int(v) for k, v in value.items() if _num(v) is not None}


def _clean_cluster(c: dict[str, Any], facet_kinds: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: c.get(k) for k in _CLUSTER_KEYS}
    out["id"] = str(out["id"])
    out["level"] = int(out["level"] or 0)
    out["parent"] = None if out["parent"] is None else str(out["parent"])
    out["kind"] = "other" if c.get("kind") == "other" else "cluster"
    # shown as text (textContent), but bidi overrides and invisible characters could still disguise it
    out["name"] = clean_text(_str(out["name"]))
    out["description"] = clean_text(_str(out["description"]))
    for k in ("size", "accounts", "share", "x", "y"):
        out[k] = _num(out[k])
    out["children"] = [str(x) for x in (c.get("children") or [])]
    audit = c.get("audit")
    if isinstance(audit, dict) and _num(audit.get("score")) is not None:
        out["audit"] = {"score": _num(audit.get("score")), "reason": _str(audit.get("reason"))}
    facets = {}
    for name, value in (c.get("facets") or {}).items():
        cleaned = _clean_facet(facet_kinds.get(name), value)
        if cleaned is not None:
            facets[str(name)] = cleaned
    out["facets"] = facets
    tl = c.get("timeline")
    if isinstance(tl, list):
        out["timeline"] = [[str(p[0]), int(p[1])] for p in tl
                           if isinstance(p, (list, tuple)) and len(p) == 2 and _num(p[1]) is not None]
    return out


def _clean_guarantee(agg: dict[str, Any]) -> dict[str, Any] | None:
    """The release's `privacy_guarantee` object (top level, or under `run`), allow-listed: mode and unit
    as short clean text, epsilon / delta / thresholds / per-account cap as finite numbers, whether it is
    formal, and the list of what it does not cover. None when the release states none."""
    g = agg.get("privacy_guarantee")
    if not isinstance(g, dict):
        g = (agg.get("run") or {}).get("privacy_guarantee")
    if not isinstance(g, dict):
        return None
    out: dict[str, Any] = {}
    for k in _GUARANTEE_TEXT_KEYS:
        if isinstance(g.get(k), str):
            out[k] = clean_text(g[k])[:40]
    for k in _GUARANTEE_NUM_KEYS:
        if _num(g.get(k)) is not None:
            out[k] = g[k]
    if isinstance(g.get("formal_guarantee"), bool):
        out["formal_guarantee"] = g["formal_guarantee"]
    # what the guarantee does not cover: fixed sentences of the DP mode (dp.NOT_COVERED), shown as text
    if isinstance(g.get("not_covered"), list):
        out["not_covered"] = [clean_text(x)[:300] for x in g["not_covered"][:12] if isinstance(x, str)]
    return out or None


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def load_published(run_dir: Path) -> tuple[dict[str, Any], Any]:
    """The only two artifacts the explorer reads: json `aggregates` and table `points`."""
    store = RunStore(run_dir)
    if not store.has("json:aggregates") or not store.has("table:points"):
        raise ConvoscopeError(f"{run_dir}: no published aggregates yet; run `convoscope run` to the aggregates stage first")
    return store.read_json("aggregates"), store.read_table("points")


def build_payload(run_dir: Path) -> dict[str, Any]:
    """The explorer's data: allow-listed aggregates plus compactly encoded points."""
    agg, points = load_published(Path(run_dir))
    facets = []
    for f in agg.get("facets") or []:
        if isinstance(f, dict) and f.get("name"):
            g = {"name": str(f["name"]), "kind": "number" if f.get("kind") == "number" else "category"}
            for k in ("min", "max"):
                if _num(f.get(k)) is not None:
                    g[k] = f[k]
            facets.append(g)
    kinds = {f["name"]: f["kind"] for f in facets}
    clusters = [_clean_cluster(c, kinds) for c in agg.get("clusters") or []
                if isinstance(c, dict) and c.get("published", True) is not False]
    index = {c["id"]: i for i, c in enumerate(clusters)}
    for c in clusters:  # drop dangling references (e.g. to withheld children)
        c["children"] = [x for x in c["children"] if x in index]
        if c["parent"] is not None and c["parent"] not in index:
            c["parent"] = None

    full_run = agg.get("run") or {}
    run = {k: full_run.get(k) for k in _RUN_KEYS if k in full_run}
    # only the two known values; runs made before the key existed had account ids
    run["account_ids"] = "absent" if full_run.get("account_ids") == "absent" else "present"
    levels = int(run.get("levels") or 0) or (max((c["level"] for c in clusters), default=0) + 1)
    withheld = agg.get("withheld") or {}
    withheld = {k: int(withheld[k]) for k in ("clusters", "conversations") if _num(withheld.get(k)) is not None}

    # ---- points ------------------------------------------------------------------------------
    n = points.num_rows
    x = np.asarray(points.column("x").to_numpy(zero_copy_only=False), dtype=np.float64) if n else np.zeros(0)
    y = np.asarray(points.column("y").to_numpy(zero_copy_only=False), dtype=np.float64) if n else np.zeros(0)
    ok = np.isfinite(x) & np.isfinite(y)
    big = len(clusters) >= NULL16
    dtype, null = (np.uint32, NULL32) if big else (np.uint16, NULL16)
    level_cols = []
    for lv in range(levels):
        name = f"level_{lv}"
        col = np.full(n, null, dtype=dtype)
        if name in points.column_names:
            arr = points.column(name).combine_chunks().dictionary_encode()
            dict_vals = arr.dictionary.to_pylist()
            lut = np.array([index.get(str(v), null) if v is not None else null for v in dict_vals] + [null], dtype=dtype)
            codes = arr.indices.fill_null(len(dict_vals)).to_numpy(zero_copy_only=False)
            col = lut[codes]
        level_cols.append(col)
    x, y = x[ok], y[ok]
    level_cols = [c[ok] for c in level_cols]
    if len(x):
        x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    else:
        x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
    sx = (x1 - x0) or 1.0
    sy = (y1 - y0) or 1.0
    qx = np.round((x - x0) / sx * 65535).astype(np.uint16)
    qy = np.round((y - y0) / sy * 65535).astype(np.uint16)
    # sort: by cluster path, then position: row order no longer matches any internal table
    order = np.lexsort([qy, qx] + level_cols[::-1]) if len(x) else np.zeros(0, dtype=np.int64)
    pts = {
        "n": int(len(x)), "bounds": [x0, x1, y0, y1], "index": "u32" if big else "u16",
        "x": _b64(qx[order]), "y": _b64(qy[order]),
        "levels": [_b64(c[order]) for c in level_cols],
    }
    payload = {
        "version": PAYLOAD_VERSION,
        "hierarchy": clean_text(_str(run.get("facet") or "request"))[:60],
        "run": run,
        "levels": levels,
        "facets": facets,
        "facets_unavailable": {str(k): _str(v) for k, v in (agg.get("facets_unavailable") or {}).items()},
        "withheld": withheld,
        "warnings": run_warnings(full_run),  # shown as a banner (as text, never as HTML)
        "clusters": clusters,
        "points": pts,
    }
    guarantee = _clean_guarantee(agg)
    if guarantee is not None:
        payload["privacy_guarantee"] = guarantee
    return payload


def hierarchy_dirs(run_dir: Path, facet: str | None = None) -> list[tuple[str, Path]]:
    """(facet, directory) of every hierarchy of a run, the primary first; only `facet`'s when given (an
    unknown facet is a clear error naming the run's). Missing aggregates fail later, in `load_published`."""
    store = RunStore(Path(run_dir))
    names = [facet] if facet is not None else (store.facets() if store.parent is None else [None])
    out = []
    for name in names:
        sub = store.for_facet(name)
        label = name or sub.manifest.get("facet") or (store.facets()[0] if store.parent is None else "request")
        out.append((str(label), sub.root))
    return out


def build_run_payload(run_dir: Path, facet: str | None = None) -> dict[str, Any]:
    """The page's data: one hierarchy's payload (`build_payload`), or, for a run with several hierarchies
    and no `facet`, {"version", "hierarchies": [payload, ...]} (primary first) for the page's switcher."""
    dirs = hierarchy_dirs(run_dir, facet)
    payloads = []
    for name, root in dirs:
        p = build_payload(root)
        p["hierarchy"] = clean_text(name)[:60]
        payloads.append(p)
    if len(payloads) == 1:
        return payloads[0]
    return {"version": PAYLOAD_VERSION, "hierarchies": payloads}


def payload_json(payload: dict[str, Any]) -> bytes:
    """JSON safe to place inside a <script> element ("<" escaped, so no "</script>" can occur)."""
    return orjson.dumps(payload).replace(b"<", b"\\u003c")


_PLACEHOLDER = re.compile(r"/\*__CSS__\*/|<!--__DATA__-->|__TITLE__|/\*__JS__\*/")


def fill_template(template: str, values: dict[str, str]) -> str:
    """Replace every placeholder of `template` in one pass. Values are never scanned again, so data
    that contains a placeholder string (a cluster name "__TITLE__") stays text: filling them one
    after another would substitute inside earlier values and break the page."""
    return _PLACEHOLDER.sub(lambda m: values[m.group()], template)


def _page(data_tag: str, title: str) -> str:
    esc = (title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return fill_template(_asset("index.html"), {
        "/*__CSS__*/": _asset("app.css"),
        "<!--__DATA__-->": data_tag,
        "__TITLE__": esc,
        "/*__JS__*/": _asset("app.js").replace("</script", "<\\/script"),
    })


def build_explorer_html(run_dir: Path, facet: str | None = None) -> str:
    """One self-contained HTML page (data, script and style inlined; no network access): every hierarchy
    of the run, with a switcher, or only `facet`'s."""
    payload = build_run_payload(Path(run_dir), facet)
    data = payload_json(payload).decode("utf-8")
    tag = f'<script type="application/json" id="explorer-data">{data}</script>'
    return _page(tag, f"convoscope explorer — {Path(run_dir).resolve().name}")


def build_served_html(run_dir: Path, data_url: str = "data.json") -> str:
    """The same page, fetching its data from `data_url` (used by `serve`)."""
    tag = f'<script type="application/json" id="explorer-data-url">{json.dumps(data_url)}</script>'
    return _page(tag, f"convoscope explorer — {Path(run_dir).resolve().name}")


def write_explorer(run_dir: Path, output: Path | None = None, facet: str | None = None) -> Path:
    """Write the self-contained explorer page (all hierarchies, or only `facet`'s); default
    `<run_dir>/explorer.html`, or `explorer.html` in the facet's hierarchy directory. Returns the path."""
    run_dir = Path(run_dir)
    html = build_explorer_html(run_dir, facet)
    default_dir = hierarchy_dirs(run_dir, facet)[0][1] if facet is not None else run_dir
    out = Path(output) if output is not None else default_dir / "explorer.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def refresh_stale_explorers(run_dir: Path, console: Any = None) -> list[Path]:
    """Rewrite the explorer pages at their default places (`RUN/explorer.html`: every hierarchy; a hierarchy
    directory's own `explorer.html`: that one) that are older than a release they show, so that a rerun into
    the directory never leaves a page of the previous data beside the new release. Returns the pages rewritten,
    each named on `console` (a rich Console) when given."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if store.parent is not None:  # a hierarchy directory: refreshed from its run
        return []
    pages: list[tuple[Path, str | None, list[Path]]] = []
    dirs = hierarchy_dirs(run_dir)
    pages.append((run_dir / "explorer.html", None, [root for _, root in dirs]))
    for name, root in dirs:
        if root != run_dir:
            pages.append((root / "explorer.html", name, [root]))
    refreshed = []
    for page, facet, roots in pages:
        if not page.exists():
            continue
        releases = [RunStore(root)._file("json:aggregates") for root in roots]  # the store alone names its files
        if any(not r.exists() for r in releases):
            continue
        if page.stat().st_mtime_ns < max(r.stat().st_mtime_ns for r in releases):
            refreshed.append(write_explorer(run_dir, page, facet=facet))
            if console is not None:
                console.print(f"  explorer rewritten for the new release: {escape(str(page))}")
    return refreshed

