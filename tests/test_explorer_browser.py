"""The explorer in headless Chromium: offline load, tree, map, search, selection, URL state, serve."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from convoscope.explorer import make_server, write_explorer
from fakes.run_fixture import FALSE_ALARM_ID, HOSTILE_NAME, MISS_ID, RISER_ID, make_run

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None

if sync_playwright is None:
    pytest.skip("playwright is not installed (pip install playwright)", allow_module_level=True)
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]

NONBLANK_JS = """() => { const c = document.getElementById('map');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i+1] !== 255 || d[i+2] !== 255) n++; return n; }"""


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("brun"), n_points=3000, levels=3, seed=0)


@pytest.fixture(scope="module")
def html_url(run_dir: Path) -> str:
    return write_explorer(run_dir).resolve().as_uri()


class Recorder:
    def __init__(self, page):
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))


def open_page(chromium, url: str):
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    rec = Recorder(page)
    page.goto(url)
    page.wait_for_function("() => window.__explorerReady", timeout=15000)
    return page, rec


@pytest.fixture(scope="module")
def shared(chromium, html_url: str):
    """One page load of the fixture run for the tests that start from a just-opened page: each calls fresh()."""
    page, rec = open_page(chromium, html_url)
    yield page, rec
    page.close()


def fresh(shared, hash_: str = ""):
    """The shared page back to a just-opened state (with `hash_` as its URL hash), drawn, errors cleared."""
    page, rec = shared
    page.evaluate("(h) => window.__explorer.reset(h)", hash_)
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    rec.errors.clear()
    return page, rec


def panel_title(page) -> str:
    return page.locator("#panel-title").inner_text().replace("withheld bucket", "").strip()


def cluster_name(page, cid: str) -> str:
    return page.evaluate("(id) => window.__explorer.clusters().find((c) => c.id === id).name", cid)


def test_loads_offline_and_draws(chromium, html_url: str) -> None:
    page, rec = open_page(chromium, html_url)
    try:
        assert rec.errors == []
        bad = [u for u in rec.requests if urlparse(u).scheme not in ("file", "data")]
        assert bad == [], bad
        assert page.locator("#tree > li[role=treeitem]").count() >= 6
        assert page.locator("#tree li.other .badge").inner_text() == "withheld"
        assert page.evaluate(NONBLANK_JS) > 500
        assert page.evaluate("window.__explorer.labelsShown().length") >= 3
        # hostile markup in a name is text, never markup
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img").count() == 0
        page.fill("#search", "Tags & \"quotes\"")
        page.press("#search", "Enter")
        page.wait_for_timeout(200)
        assert panel_title(page) == HOSTILE_NAME
        assert page.evaluate("window.__pwned") is None
        assert rec.errors == []
    finally:
        page.close()


def test_search_highlights_tree_and_map(shared) -> None:
    page, rec = fresh(shared)
    page.fill("#search", "data analysis")
    page.wait_for_function("() => document.getElementById('search-count').textContent !== ''")
    page.wait_for_timeout(100)
    assert page.locator("#search-count").inner_text().endswith("clusters")
    marks = page.locator("#tree mark")
    assert marks.count() >= 1 and marks.first.inner_text().lower() == "data analysis"
    assert page.locator("#tree li.hit").count() >= 1
    shown = page.evaluate("window.__explorer.labelsShown()")
    names = [cluster_name(page, c) for c in shown]
    assert any("Data analysis" in n for n in names)
    assert rec.errors == []


def test_tree_click_and_keyboard_select(shared) -> None:
    page, rec = fresh(shared)
    first = page.locator("#tree > li[role=treeitem]").first
    name = first.get_attribute("aria-label").split(",")[0]
    first.locator(":scope > .row .name").click()
    assert panel_title(page) == name
    assert first.get_attribute("aria-selected") == "true"
    assert first.get_attribute("aria-expanded") == "true"
    # the panel: stats, children, facets, unavailable facet, timeline
    panel = page.locator("#panel")
    assert "Conversations" in panel.inner_text()
    assert "unavailable: field not present in the input" in panel.inner_text()
    assert panel.locator(".bars").count() >= 1 and panel.locator(".hist").count() >= 1
    assert panel.locator(".timeline svg").count() == 1
    # keyboard: ArrowDown goes to the first child, Enter selects it
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("document.activeElement.dataset.id")
    page.keyboard.press("Enter")
    child_name = cluster_name(page, focused)
    assert panel_title(page) == child_name
    assert page.locator(f'#tree li[data-id="{focused}"]').get_attribute("aria-selected") == "true"
    # the parent link in the panel goes back up
    page.locator("#panel .crumbs .linkbtn").first.click()
    assert panel_title(page) == name
    assert rec.errors == []


def test_map_click_selects_cluster(shared) -> None:
    page, rec = fresh(shared)
    shown = page.evaluate("window.__explorer.labelsShown()")
    target = next(c for c in shown if not c.startswith("other"))
    sx, sy = page.evaluate("(id) => window.__explorer.screenOf(id)", target)
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + sx, box["y"] + sy)
    page.wait_for_timeout(50)
    assert not page.locator("#tooltip").is_hidden()
    page.mouse.click(box["x"] + sx, box["y"] + sy)
    page.wait_for_timeout(100)
    assert panel_title(page) == cluster_name(page, target)
    assert page.locator(f'#tree li[data-id="{target}"]').get_attribute("aria-selected") == "true"
    # zooming in reveals finer labels
    before = page.evaluate("window.__explorer.labelsShown()")
    for _ in range(3):
        page.mouse.wheel(0, -500)
        page.wait_for_timeout(50)
    page.wait_for_timeout(100)
    assert page.evaluate("window.__explorer.state.k") > 4
    after = page.evaluate("window.__explorer.labelsShown()")
    levels = page.evaluate("(ids) => ids.map((id) => window.__explorer.clusters().find((c) => c.id === id).level)", after)
    assert max(levels) >= 1, (before, after)
    assert rec.errors == []


def test_url_state_round_trips(chromium, html_url: str) -> None:
    page, rec = open_page(chromium, html_url)
    try:
        page.select_option("#colour", "mean:concerning")
        page.select_option("#filter", "cat:language=Japanese")
        page.fill("#filter-min", "30")
        page.wait_for_timeout(100)
        assert page.locator("#tree li.dim").count() > 0  # the filter dims non-matching clusters
        assert page.locator("#tree > li:not(.dim)").count() > 0
        page.fill("#search", "writing")
        page.wait_for_timeout(200)
        sel = page.locator("#tree li.hit").first
        sel_id = sel.get_attribute("data-id")
        sel.locator(":scope > .row .name").click()
        page.click("#zoom-in")
        page.wait_for_function("() => location.hash.includes('z=')", timeout=5000)
        url = page.url
        state = page.evaluate("({...window.__explorer.state})")
        assert "#" in url and "c=" in url and "colour=" in url and "q=writing" in url and "z=" in url
        page2, rec2 = open_page(chromium, url)
        try:
            state2 = page2.evaluate("({...window.__explorer.state})")
            for key in ("k", "cx", "cy"):
                assert state2.pop(key) == pytest.approx(state.pop(key), rel=1e-3, abs=1e-4)
            assert state2 == state
            assert page2.input_value("#colour") == "mean:concerning"
            assert page2.input_value("#filter") == "cat:language=Japanese"
            assert page2.input_value("#search") == "writing"
            assert page2.input_value("#filter-min") == "30"
            assert panel_title(page2) == cluster_name(page2, sel_id)
            assert page2.locator(f'#tree li[data-id="{sel_id}"]').get_attribute("aria-selected") == "true"
            assert page2.locator("#legend .grad").count() == 1
            assert rec2.errors == []
        finally:
            page2.close()
        assert rec.errors == []
    finally:
        page.close()


def test_serve_loads_data_from_server(chromium, run_dir: Path) -> None:
    srv = make_server(run_dir, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        page, rec = open_page(chromium, f"http://127.0.0.1:{port}/")
        try:
            assert rec.errors == []
            origins = {f"{urlparse(u).scheme}://{urlparse(u).netloc}" for u in rec.requests if not u.startswith("data:")}
            assert origins == {f"http://127.0.0.1:{port}"}
            assert any(u.endswith("/data.json") for u in rec.requests)
            assert page.locator("#tree > li[role=treeitem]").count() >= 6
            assert page.evaluate(NONBLANK_JS) > 500
        finally:
            page.close()
    finally:
        srv.shutdown()
        srv.server_close()


def test_unavailable_facet_and_sort(chromium, tmp_path: Path) -> None:
    run = make_run(tmp_path, n_points=800, levels=2, seed=4, with_concerning=False)
    page, rec = open_page(chromium, write_explorer(run).resolve().as_uri())
    try:
        opts = page.eval_on_selector_all("#colour option", "os => os.map(o => o.value)")
        assert "mean:concerning" not in opts and "flagcmp:meta.flagged" not in opts  # no concern: no comparison
        assert "share:meta.flagged=true" in opts and "change" in opts
        page.locator("#tree > li[role=treeitem]").first.locator(":scope > .row .name").click()
        assert "unavailable: needs an LLM (run with --llm)" in page.locator("#panel").inner_text()
        page.select_option("#sort", "name")
        names = page.eval_on_selector_all("#tree > li:not(.other)", "ls => ls.map(l => l.getAttribute('aria-label'))")
        assert names == sorted(names)
        page.select_option("#sort", "mean:turns")
        page.wait_for_function("() => location.hash.includes('sort=mean')", timeout=5000)
        assert rec.errors == []
    finally:
        page.close()


def colour_options(page) -> list[str]:
    return page.eval_on_selector_all("#colour option", "os => os.map(o => o.value)")


def test_share_of_any_category_value(shared) -> None:
    page, rec = fresh(shared)
    opts = colour_options(page)
    assert {"share:meta.flagged=true", "share:meta.category=web", "share:language=Japanese"} <= set(opts)
    page.select_option("#colour", "share:meta.flagged=true")
    page.wait_for_timeout(100)
    assert "Share of flagged (metadata) = true" in page.locator("#legend").inner_text()
    assert page.evaluate(NONBLANK_JS) > 500
    assert rec.errors == []


def test_language_ratio_overlay(shared) -> None:
    page, rec = fresh(shared)
    page.select_option("#colour", "ratio:language=Japanese")
    page.wait_for_timeout(100)
    legend = page.locator("#legend").inner_text()
    assert "1×" in legend and "too few" in legend and page.locator("#legend .grad").count() == 1
    assert page.evaluate(NONBLANK_JS) > 500
    page.evaluate("window.__explorer.select('c2L0')")  # topic 2 is planted as over-represented in Japanese
    ratio = page.locator("#panel-ratio").inner_text()
    assert "Japanese" in ratio and "ratio " in ratio
    jp = page.locator("#panel-ratio .chosen").nth(1).inner_text()
    assert float(jp.split("ratio ")[1].split("×")[0]) > 1.5
    page.wait_for_function("() => location.hash.includes('colour=ratio')", timeout=5000)
    assert rec.errors == []


def test_change_overlay_and_hash_restores_it(shared) -> None:
    page, rec = fresh(shared, "colour=change&c=" + RISER_ID)
    assert page.input_value("#colour") == "change"
    assert "growing" in page.locator("#legend").inner_text()
    assert page.evaluate(NONBLANK_JS) > 500
    text = page.locator("#panel-change").inner_text()
    assert "first half" in text and "second half" in text and "(growing)" in text
    # nearly all of the riser's conversations are in the second half
    assert "new in the second half" in text or float(text.split("change in share")[1].strip().split("×")[0]) > 3
    # the tree shows the colour value when sorted by it
    page.select_option("#sort", "colour")
    assert "growing" in page.locator(f'#tree li[data-id="{RISER_ID}"] > .row .num').inner_text()
    assert rec.errors == []


def test_classifier_comparison(shared, chromium) -> None:
    page, rec = fresh(shared)
    page.select_option("#colour", "flagcmp:meta.flagged")
    page.wait_for_timeout(100)
    legend = page.locator("#legend").inner_text()
    assert "likely miss" in legend and "likely false alarm" in legend
    assert page.evaluate(NONBLANK_JS) > 500
    page.evaluate("(id) => window.__explorer.select(id)", MISS_ID)
    text = page.locator("#panel-flag").inner_text()
    assert "flag rate" in text and "mean concerning" in text and "likely miss" in text
    page.evaluate("(id) => window.__explorer.select(id)", FALSE_ALARM_ID)
    assert "likely false alarm" in page.locator("#panel-flag").inner_text()
    page.wait_for_function("(id) => location.hash.includes('c=' + id) && location.hash.includes('colour=flagcmp')",
                           arg=FALSE_ALARM_ID, timeout=5000)
    page2, rec2 = open_page(chromium, page.url)
    try:
        assert page2.input_value("#colour") == "flagcmp:meta.flagged"
        assert "likely false alarm" in page2.locator("#panel-flag").inner_text()
        assert rec2.errors == []
    finally:
        page2.close()
    assert rec.errors == []


# ---- one run with two hierarchies (threshold and DP), a few far outliers; one page load per view ---------

@pytest.fixture(scope="module")
def multi_url(tmp_path_factory) -> str:
    from test_explorer import make_multi_run

    run = make_multi_run(tmp_path_factory.mktemp("bmulti"), n_points=2000, outliers=6)
    return write_explorer(run).resolve().as_uri()


@pytest.fixture(scope="module")
def multi_page(chromium, multi_url: str):
    page, rec = open_page(chromium, multi_url)
    yield page, rec
    page.close()


LABEL_GEOMETRY_JS = """() => {
  const E = window.__explorer, [w, h] = E.mapSize(), boxes = E.labelBoxes(), c = document.createElement('canvas').getContext('2d');
  const m = document.getElementById('map').getBoundingClientRect(), widgets = [];
  for (const sel of ['#legend', '.zoom-btns', '#map-status']) {
    const r = document.querySelector(sel).getBoundingClientRect();
    if (r.width) widgets.push([r.left - m.left, r.top - m.top, r.right - m.left, r.bottom - m.top]);
  }
  return { w, h, widgets, boxes: boxes.map((b) => { c.font = b.font;
    return { ...b, textWidth: c.measureText(b.text).width, centre: E.screenOf(b.id) }; }) };
}"""


def check_labels(page) -> int:
    """Rendered labels: each box holds its text, lies inside the map, overlaps no other label and none of
    the map's widgets, and sits at a cluster whose centre is on the map. Returns how many there are."""
    g = page.evaluate(LABEL_GEOMETRY_JS)
    boxes = g["boxes"]
    hit = lambda a, b: not (a[2] <= b[0] or a[0] >= b[2] or a[3] <= b[1] or a[1] >= b[3])  # noqa: E731
    for j, b in enumerate(boxes):
        x0, y0, x1, y1 = b["box"]
        assert x1 - x0 >= b["textWidth"], b
        assert 0 <= x0 and x1 <= g["w"] and 0 <= y0 and y1 <= g["h"], (b, g["w"], g["h"])
        cx, cy = b["centre"]
        assert 0 <= cx <= g["w"] and 0 <= cy <= g["h"], b
        for other in boxes[j + 1:]:
            assert not hit(b["box"], other["box"]), (b, other)
        for wd in g["widgets"]:
            assert not hit(b["box"], wd), (b, wd)
    return len(boxes)


def test_labels_placed_without_overlap(multi_page) -> None:
    page, rec = multi_page
    page.evaluate("location.hash = ''")
    page.wait_for_timeout(100)
    assert check_labels(page) >= 4
    # zoomed in (finer levels, many more candidates) and panned so that part of the map is off-screen:
    # labels whose cluster is off the map are hidden, none is pushed onto the edge
    top = page.locator("#tree > li[role=treeitem]").first.get_attribute("data-id")
    sx, sy = page.evaluate("(id) => window.__explorer.screenOf(id)", top)
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + sx, box["y"] + sy)
    for _ in range(2):
        page.mouse.wheel(0, -500)
        page.wait_for_timeout(50)
    page.wait_for_timeout(150)
    assert page.evaluate("window.__explorer.state.k") > 2
    n_zoomed = check_labels(page)
    assert n_zoomed >= 4
    levels = page.evaluate("window.__explorer.labelsShown().map((id) => window.__explorer.clusters().find((c) => c.id === id).level)")
    assert max(levels) >= 1
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    page.wait_for_timeout(150)
    check_labels(page)
    # clusters whose centre left the map have no label (before the fix they were clamped to the edge)
    off = page.evaluate("""() => { const E = window.__explorer, [w, h] = E.mapSize();
        return E.clusters().filter((c) => { const p = E.screenOf(c.id); return p && (p[0] < 0 || p[0] > w || p[1] < 0 || p[1] > h); }).map((c) => c.id); }""")
    assert off and not set(off) & set(page.evaluate("window.__explorer.labelsShown()"))
    assert rec.errors == []


def test_home_view_ignores_outliers(multi_page) -> None:
    page, rec = multi_page
    page.evaluate("location.hash = ''")
    page.keyboard.press("Escape")
    page.click("#zoom-reset")
    page.wait_for_timeout(100)
    share = page.evaluate("window.__explorer.onScreenShare()")
    assert 0.97 <= share < 1.0  # the 6 far outliers are off the map, the rest is on it
    # and the bulk fills the map instead of shrinking to a dot next to the outliers
    spread = page.evaluate("""() => { const E = window.__explorer, [w, h] = E.mapSize(), xs = [], ys = [];
        for (const c of E.clusters()) { if (c.level !== 0) continue; const p = E.screenOf(c.id); if (p) { xs.push(p[0]); ys.push(p[1]); } }
        return Math.max((Math.max(...xs) - Math.min(...xs)) / w, (Math.max(...ys) - Math.min(...ys)) / h); }""")
    assert spread > 0.4, spread
    assert rec.errors == []


def test_facet_switcher(multi_page, chromium, multi_url: str) -> None:
    page, rec = multi_page
    assert page.locator("#hier").is_visible()
    assert page.eval_on_selector_all("#hier option", "os => os.map(o => o.textContent)") == ["request", "task"]
    top_names = lambda p: p.eval_on_selector_all("#tree > li", "ls => ls.map(l => l.getAttribute('aria-label'))")  # noqa: E731
    assert not any(n.startswith("Task · ") for n in top_names(page))
    page.select_option("#hier", label="task")
    page.wait_for_function("() => location.hash.includes('h=task')", timeout=5000)
    names = top_names(page)
    assert len(names) == 5 and all(n.startswith("Task · ") for n in names)  # 4 top clusters and "other"
    assert page.evaluate("window.__explorer.hierarchy()") == "task"
    shown = page.evaluate("window.__explorer.labelBoxes().map((b) => b.text)")
    assert shown and all(t.startswith("Task · ") for t in shown)
    assert page.evaluate(NONBLANK_JS) > 500  # no points in this (DP) release: the clusters are drawn as discs
    assert "no conversation positions" in page.locator("#map-status").inner_text()
    # selecting works in the other hierarchy, and a link reopens it there
    page.locator("#tree > li[role=treeitem]").first.locator(":scope > .row .name").click()
    assert panel_title(page).startswith("Task · ")
    page.wait_for_function("() => location.hash.includes('c=')", timeout=5000)
    page2, rec2 = open_page(chromium, page.url)
    try:
        assert page2.input_value("#hier") == "1" and panel_title(page2) == panel_title(page)
        assert rec2.errors == []
    finally:
        page2.close()
    page.select_option("#hier", label="request")
    assert not any(n.startswith("Task · ") for n in top_names(page))
    assert rec.errors == []


def test_guarantee_is_stated(multi_page) -> None:
    page, rec = multi_page
    page.select_option("#hier", label="request")
    page.keyboard.press("Escape")
    page.evaluate("window.__explorer.select('')")  # nothing selected: the overview
    head = page.locator("#guarantee").inner_text()
    assert "thresholds" in head and "5 accounts" in head and "not a formal guarantee" in head
    text = page.locator("#panel-guarantee").inner_text()
    assert "5 accounts" in text and "15 conversations" in text and "not a formal (differential-privacy) guarantee" in text
    page.select_option("#hier", label="task")
    assert page.locator("#guarantee").inner_text() == "Differential privacy: ε = 1, δ = 1e-6 per account"
    text = page.locator("#panel-guarantee").inner_text()
    assert "ε = 1, δ = 1e-6, unit: account" in text and "at most 20 conversations from each account" in text
    assert "Not covered:" in text and "budgets add up" in text
    page.select_option("#hier", label="request")
    assert rec.errors == []


def test_narrow_layout(chromium, multi_url: str) -> None:
    page = chromium.new_page(viewport={"width": 800, "height": 800})
    rec = Recorder(page)
    try:
        page.goto(multi_url)
        page.wait_for_function("() => window.__explorerReady", timeout=15000)
        assert page.evaluate("[document.documentElement.scrollWidth, document.body.scrollWidth]") == [800, 800]
        for sel in ("#map", ".tree-pane", "#panel", "#search", "#colour", "#filter", "#sort", "#hier", "#guarantee", ".brand"):
            b = page.locator(sel).bounding_box()
            assert b and b["x"] >= 0 and b["x"] + b["width"] <= 800 and b["y"] >= 0 and b["y"] + b["height"] <= 800, (sel, b)
        for sel in ("#map", ".tree-pane", "#panel"):  # key panels keep a usable size
            b = page.locator(sel).bounding_box()
            assert b["width"] >= 300 and b["height"] >= 200, (sel, b)
        assert page.evaluate("(() => { const t = document.querySelector('.top'); return t.scrollWidth <= t.clientWidth; })()")
        assert check_labels(page) >= 3
        page.locator("#tree > li[role=treeitem]").first.locator(":scope > .row .name").click()
        assert panel_title(page)
        assert rec.errors == []
    finally:
        page.close()


def test_withheld_counts_are_worded_not_bounded_by_zero(multi_page) -> None:
    """A language the privacy rule merged into "other" reads "withheld (at most N ...)"; one that is simply
    absent reads 0; "≤0" never appears (it used to, for absent languages)."""
    page, rec = multi_page
    page.select_option("#hier", label="request")
    texts = page.evaluate("""() => { const out = [];
        for (const c of window.__explorer.clusters()) { window.__explorer.select(c.id);
          const r = document.getElementById('panel-ratio'); if (r) out.push(r.textContent); }
        window.__explorer.select(''); return out; }""")
    joined = " | ".join(texts)
    assert len(texts) > 20
    assert not re.search(r"≤ ?0(?![.\d])", joined), joined  # "≤ 0.14×" (a bounded ratio) is fine, "≤0 of 40" is not
    assert 'withheld (at most ' in joined and 'merged into "other")' in joined
    assert " 0 of " in joined  # the all-English cluster (make_multi_run): Japanese is 0 there, not "≤0"
    assert rec.errors == []


def test_font_stack_covers_other_scripts(multi_page) -> None:
    """The page and the map labels use one system font stack that names CJK and other scripts' families
    (the page ships no font; whether a glyph shows depends on the reader's system)."""
    page, rec = multi_page
    family = page.evaluate("getComputedStyle(document.body).fontFamily")
    for name in ("system-ui", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK JP", "Malgun Gothic", "Noto Sans Arabic",
                 "Noto Sans Devanagari", "sans-serif"):
        assert name in family, name
    fonts = set(page.evaluate("window.__explorer.labelBoxes().map((b) => b.font)"))
    assert fonts and all("Noto Sans CJK JP" in f and "PingFang SC" in f for f in fonts)
    assert rec.errors == []
