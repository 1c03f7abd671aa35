"""The explorer's payload and HTML: schema, compact encoding, privacy contract, escaping, server."""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from convoscope.explorer import build_explorer_html, build_payload, make_server, write_explorer
from convoscope.store import RunStore
from fakes.run_fixture import (
    HOSTILE_NAME,
    PLANTED_ACCOUNT_PREFIX,
    PLANTED_CONV_PREFIX,
    PLANTED_TEXT,
    PLANTED_WITHHELD_DESCRIPTION,
    PLANTED_WITHHELD_NAME,
    make_run,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run"), n_points=1500, levels=3, seed=1)


def embedded_payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def decode(payload: dict) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    p = payload["points"]
    dt = np.uint16 if p["index"] == "u16" else np.uint32
    x = np.frombuffer(base64.b64decode(p["x"]), dtype="<u2")
    y = np.frombuffer(base64.b64decode(p["y"]), dtype="<u2")
    levels = [np.frombuffer(base64.b64decode(s), dtype=np.dtype(dt).newbyteorder("<")) for s in p["levels"]]
    return x, y, levels


def test_payload_matches_published_data(run_dir: Path) -> None:
    store = RunStore(run_dir)
    agg = store.read_json("aggregates")
    points = store.read_table("points")
    payload = build_payload(run_dir)
    assert payload["levels"] == 3
    assert [c["id"] for c in payload["clusters"]] == [c["id"] for c in agg["clusters"]]
    assert payload["facets_unavailable"] == agg["facets_unavailable"]
    x, y, levels = decode(payload)
    assert payload["points"]["n"] == points.num_rows == len(x) == len(y)
    ids = [c["id"] for c in payload["clusters"]]
    null = 0xFFFF
    for lv, col in enumerate(levels):
        got = Counter(None if v == null else ids[v] for v in col.tolist())
        want = Counter(points.column(f"level_{lv}").to_pylist())
        assert got == want
    # quantised positions stay within 1/65535 of the range
    x0, x1, y0, y1 = payload["points"]["bounds"]
    xs = np.sort(x0 + x / 65535 * (x1 - x0))
    assert np.allclose(xs, np.sort(points.column("x").to_numpy()), atol=(x1 - x0) / 65535 + 1e-4)


def test_html_is_self_contained_and_offline(run_dir: Path) -> None:
    html = build_explorer_html(run_dir)
    assert html.startswith("<!doctype html>")
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html), "external resource reference"
    assert "Content-Security-Policy" in html
    # only one </script> per script element: the data cannot close its element early
    assert html.count("</script>") == 2
    payload = embedded_payload(html)
    assert payload["points"]["n"] == 1500


def test_privacy_no_ids_no_withheld(run_dir: Path) -> None:
    out = write_explorer(run_dir)
    assert out == run_dir / "explorer.html"
    html = out.read_text()
    for planted in (PLANTED_CONV_PREFIX, PLANTED_ACCOUNT_PREFIX, PLANTED_WITHHELD_NAME, PLANTED_WITHHELD_DESCRIPTION,
                    PLANTED_TEXT, "078-05-1120", "fewer than 5 accounts"):
        assert planted not in html, planted
    store = RunStore(run_dir)
    internal = store.read_table("clusters").to_pylist()
    withheld = [c["id"] for c in internal if not c["published"]]
    assert withheld
    payload = embedded_payload(html)
    ids = {c["id"] for c in payload["clusters"]}
    assert not ids & set(withheld)
    for cid in withheld:
        assert f'"{cid}"' not in html
    # nothing but allow-listed keys
    allowed = {"id", "level", "parent", "kind", "name", "description", "size", "accounts", "share", "children",
               "x", "y", "audit", "facets", "timeline"}
    for c in payload["clusters"]:
        assert set(c) <= allowed
    assert set(payload["points"]) == {"n", "bounds", "index", "x", "y", "levels"}
    # the internal conversation ids are present in the run dir (so the check above means something)
    assert store.read_table("conversations").column("conv_id")[0].as_py().startswith(PLANTED_CONV_PREFIX)


def test_allow_list_drops_unexpected_fields(tmp_path: Path) -> None:
    run = make_run(tmp_path, n_points=300, levels=2, seed=3)
    store = RunStore(run)
    agg = store.read_json("aggregates")
    agg["clusters"][0]["examples"] = [PLANTED_CONV_PREFIX + "leak"]
    agg["clusters"][0]["facets"]["language"]["extra"] = {"nested": PLANTED_ACCOUNT_PREFIX}
    agg["run"]["input_path"] = "/home/someone/" + PLANTED_TEXT
    agg["clusters"].append({"id": "hidden", "level": 0, "parent": None, "kind": "cluster", "published": False,
                            "name": PLANTED_WITHHELD_NAME, "description": "", "size": 3, "children": []})
    store.write_json("aggregates", agg)
    html = build_explorer_html(run)
    for planted in (PLANTED_CONV_PREFIX, PLANTED_ACCOUNT_PREFIX, PLANTED_TEXT, PLANTED_WITHHELD_NAME):
        assert planted not in html


def test_points_are_reordered(run_dir: Path) -> None:
    """Row order of the shipped points must not follow the internal tables' order."""
    payload = build_payload(run_dir)
    _, _, levels = decode(payload)
    top = levels[0].astype(np.int64)
    assert np.all(np.diff(top) >= 0), "points sorted by cluster"


def test_hostile_names_are_inert_in_the_markup(run_dir: Path) -> None:
    html = build_explorer_html(run_dir)
    assert HOSTILE_NAME not in html  # "<" is escaped inside the JSON
    payload = embedded_payload(html)
    assert HOSTILE_NAME in {c["name"] for c in payload["clusters"]}
    # no data reaches the page through innerHTML
    js = html[html.index("<script>"):]
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


def test_unavailable_concerning(tmp_path: Path) -> None:
    run = make_run(tmp_path, n_points=400, levels=2, seed=2, with_concerning=False)
    payload = build_payload(run)
    assert "concerning" in payload["facets_unavailable"]
    assert all("concerning" not in c["facets"] for c in payload["clusters"])


def test_missing_aggregates_is_a_clear_error(tmp_path: Path) -> None:
    from convoscope.errors import ConvoscopeError

    RunStore(tmp_path, create=True).update_manifest(stages={})
    with pytest.raises(ConvoscopeError, match="aggregates"):
        build_explorer_html(tmp_path)
    with pytest.raises(ConvoscopeError):
        build_explorer_html(tmp_path / "nope")


def test_size_at_20k_is_mailable(tmp_path: Path) -> None:
    run = make_run(tmp_path, n_points=20000, levels=3, seed=0)
    size = len(build_explorer_html(run).encode())
    assert size < 600_000, size


def test_server_serves_page_and_data_only(run_dir: Path) -> None:
    srv = make_server(run_dir, port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        host, port = srv.server_address[:2]
        assert host == "127.0.0.1"
        base = f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(base + "/").read().decode()
        assert 'id="explorer-data-url"' in page and 'id="explorer-data"' not in page
        req = urllib.request.Request(base + "/data.json", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            data = json.loads(gzip.decompress(r.read()))
        assert data["points"]["n"] == 1500
        for path in ("/points.parquet", "/conversations.parquet", "/manifest.json", "/../x", "/explorer.html"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path)
            assert e.value.code == 404
    finally:
        srv.shutdown()
        srv.server_close()


DP_GUARANTEE = {"mode": "dp", "epsilon": 1.0, "delta": 1e-6, "unit": "account"}
# the object as the DP release writes it (convoscope.dp.PrivacyBudget.guarantee), keys the page does not use included
DP_RELEASE_GUARANTEE = DP_GUARANTEE | {
    "max_conversations_per_account": 20, "hierarchies": 2,
    "accounting": "zero-concentrated DP (rho 0.0108) composed over every release, converted to (epsilon, delta) by opendp",
    "split": {"clusters": {"share": 0.5, "rho": 0.0054}}, "delta_split": {"clusters": 5e-7},
    "rho_spent": {"aggregates stage": {"clusters": 0.0054}},
    "not_covered": ["repeated runs on the same data: each run spends its own budget, and budgets add up"]}


def make_multi_run(tmp_dir: Path, n_points: int = 1200, outliers: int = 0) -> Path:
    """A run with two hierarchies: the primary (request, threshold mode) and `task` (hierarchies/task, names
    prefixed "Task · ", released as the DP mode does: a guarantee, cluster positions but no points). One primary level-1 cluster is all English (no
    "other" entry); `outliers` far-away points join the primary's "other" bucket (for the home view)."""
    root = make_run(tmp_dir, n_points=n_points, levels=3, seed=0)
    sub = make_run(root / "hierarchies" / "task", n_points=n_points, levels=2, seed=5, n_top=4, hostile_name=False)
    task = RunStore(sub)
    task.update_manifest(parent_run="../..", facet="task")
    agg = task.read_json("aggregates")
    for c in agg["clusters"]:
        c["name"] = "Task · " + c["name"]
    agg["run"]["facet"] = "task"
    agg["privacy_guarantee"] = dict(DP_RELEASE_GUARANTEE)
    task.write_json("aggregates", agg)
    import pyarrow as pa

    pts = task.read_table("points")
    task.write_table("points", pa.table({k: pa.array([], pts.schema.field(k).type) for k in pts.column_names}))
    store = RunStore(root)
    store.update_manifest(hierarchy_facets=["request", "task"])
    # one cluster all in English with nothing merged into "other": other languages are exactly 0 there
    agg = store.read_json("aggregates")
    child = next(c for c in agg["clusters"] if c["level"] == 1)
    child["facets"]["language"] = {"English": child["size"]}
    store.write_json("aggregates", agg)
    if outliers:
        import pyarrow as pa

        pts = store.read_table("points")
        far = {"x": [1000.0 + i for i in range(outliers)], "y": [-1000.0 - i for i in range(outliers)]}
        extra = {k: pa.array(far[k] if k in far else (["other-L0"] if k == "level_0" else [None]) * outliers, pts.schema.field(k).type)
                 for k in pts.column_names}
        store.write_table("points", pa.concat_tables([pts, pa.table(extra, schema=pts.schema)]))
    return root


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory) -> Path:
    return make_multi_run(tmp_path_factory.mktemp("multi"))


def test_one_page_for_all_hierarchies(multi_run: Path) -> None:
    from convoscope.explorer.bundle import build_run_payload

    out = write_explorer(multi_run)
    assert out == multi_run / "explorer.html"
    data = embedded_payload(out.read_text())
    assert [h["hierarchy"] for h in data["hierarchies"]] == ["request", "task"]
    primary, task = data["hierarchies"]
    assert primary == build_payload(multi_run) | {"hierarchy": "request"}
    assert all(c["name"].startswith("Task · ") for c in task["clusters"])
    assert not any(c["name"].startswith("Task · ") for c in primary["clusters"])
    # --facet: only that hierarchy, written in its directory
    one = write_explorer(multi_run, facet="task")
    assert one == multi_run / "hierarchies" / "task" / "explorer.html"
    single = embedded_payload(one.read_text())
    assert "hierarchies" not in single and single["hierarchy"] == "task" and single["points"]["n"] == task["points"]["n"] == 0
    assert task["privacy_guarantee"] == DP_GUARANTEE | {"max_conversations_per_account": 20, "hierarchies": 2,
                                                        "not_covered": DP_RELEASE_GUARANTEE["not_covered"]}
    assert build_run_payload(multi_run, "request")["hierarchy"] == "request"
    from convoscope.errors import ConvoscopeError

    with pytest.raises(ConvoscopeError, match="no hierarchy for facet 'nope'.*request, task"):
        build_run_payload(multi_run, "nope")
    # nothing internal of either hierarchy reaches the page
    html = out.read_text()
    for planted in (PLANTED_CONV_PREFIX, PLANTED_ACCOUNT_PREFIX, PLANTED_WITHHELD_NAME, PLANTED_TEXT, "078-05-1120"):
        assert planted not in html, planted


def test_cli_explore_writes_one_page_with_every_hierarchy(multi_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from convoscope.cli import app

    out = tmp_path / "all.html"
    res = CliRunner().invoke(app, ["explore", str(multi_run), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "hierarchies: request, task" in " ".join(res.output.split())
    assert [h["hierarchy"] for h in embedded_payload(out.read_text())["hierarchies"]] == ["request", "task"]
    res = CliRunner().invoke(app, ["explore", str(multi_run), "--facet", "task"])
    assert res.exit_code == 0, res.output
    assert embedded_payload((multi_run / "hierarchies" / "task" / "explorer.html").read_text())["hierarchy"] == "task"


def test_served_data_holds_every_hierarchy(multi_run: Path) -> None:
    srv = make_server(multi_run, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/data.json") as r:
            data = json.loads(r.read())
        assert [h["hierarchy"] for h in data["hierarchies"]] == ["request", "task"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_privacy_guarantee_is_allow_listed(tmp_path: Path) -> None:
    run = make_run(tmp_path, n_points=300, levels=2, seed=3)
    assert "privacy_guarantee" not in build_payload(run)  # threshold mode: the page words it from run.min_accounts
    store = RunStore(run)
    agg = store.read_json("aggregates")
    agg["privacy_guarantee"] = DP_GUARANTEE | {"note": PLANTED_TEXT, "accounts_seen": [PLANTED_ACCOUNT_PREFIX + "1"],
                                               "unit": "account\u202e" + "x" * 100, "epsilon_spent": {"ids": PLANTED_CONV_PREFIX}}
    store.write_json("aggregates", agg)
    got = build_payload(run)["privacy_guarantee"]
    assert set(got) == {"mode", "epsilon", "delta", "unit"}  # nothing unknown, nested or planted
    assert got["mode"] == "dp" and got["epsilon"] == 1.0 and got["delta"] == 1e-6
    assert "\u202e" not in got["unit"] and len(got["unit"]) <= 40
    html = build_explorer_html(run)
    for planted in (PLANTED_TEXT, PLANTED_ACCOUNT_PREFIX, PLANTED_CONV_PREFIX):
        assert planted not in html
    # stated under `run` (where a release may put it) works the same
    agg.pop("privacy_guarantee")
    agg["run"]["privacy_guarantee"] = {"mode": "dp", "epsilon": 2, "delta": float("nan")}
    store.write_json("aggregates", agg)
    assert build_payload(run)["privacy_guarantee"] == {"mode": "dp", "epsilon": 2}
