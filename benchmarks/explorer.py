"""Explorer benchmark and screenshot tool.

    python benchmarks/explorer.py                      # load time at 10k / 100k points, size at 20k
    python benchmarks/explorer.py --sizes 10000 50000  # other sizes
    python benchmarks/explorer.py --screenshot docs/explorer.png RUN_DIR [--hash 'c=ID&colour=...']

Measured in headless Chromium on fixture runs (tests/fakes/run_fixture.py), from navigation start: until
the app has drawn its first map frame (`window.__explorerReady`), and until it has answered the first
interaction (a hover on a cluster label, sent as soon as the first frame is up: `window.__explorerHoverAt`).
The load average is printed with the figures: the numbers mean little without it on a shared machine.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from convoscope.explorer import write_explorer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def load_average() -> str:
    """What else the machine was doing: the 1, 5 and 15 minute load averages (as `uptime` prints them)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)


def load_time(browser, url: str, repeats: int = 3) -> tuple[float, float, float, dict[str, float]]:
    """Medians over `repeats` fresh pages: ms from navigation start to the first map frame, ms to the first
    answered interaction (the mouse is moved onto a cluster label as soon as the first frame is up; the time
    is when the page has drawn the tooltip, so it includes the round trip from this script), ms to redraw
    one frame while zooming, and the page's own steps (ms from navigation: script start, data parsed,
    hierarchy prepared, tree and panel drawn)."""
    loads, interactive, frames, steps = [], [], [], []
    for _ in range(repeats):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__explorerReady", timeout=60000, polling=10)
        box = page.locator("#map").bounding_box()
        x0, y0, x1, y1 = page.evaluate("window.__explorer.labelBoxes()[0].box")
        page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)
        page.wait_for_function("() => window.__explorerHoverAt", timeout=60000, polling=10)
        if errors:
            raise RuntimeError(errors)
        loads.append(page.evaluate("window.__explorerReady"))
        interactive.append(page.evaluate("window.__explorerHoverAt"))
        steps.append(page.evaluate("""() => Object.fromEntries(performance.getEntriesByType('mark')
            .filter((m) => m.name.startsWith('explorer:')).map((m) => [m.name.slice(9), m.startTime]))"""))
        frames.append(page.evaluate("""() => { const ks = [1, 1.5, 2.5, 4, 8, 2, 1]; let t = 0;
            for (const k of ks) t += window.__explorer.timeDraw(k); return t / ks.length; }"""))
        page.close()
    step = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
    return statistics.median(loads), statistics.median(interactive), statistics.median(frames), step


def bench(sizes: list[int], size_at: int) -> None:
    from playwright.sync_api import sync_playwright

    from fakes.run_fixture import make_run

    print(f"machine: {machine()}")
    print(f"load: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = _launch(p)
        print(f"browser: Chromium {browser.version} (headless, --disable-gpu, 1280x800)")
        for n in sizes:
            run = make_run(Path(tmp) / f"run{n}", n_points=n, levels=3, seed=0)
            t0 = time.perf_counter()
            out = write_explorer(run)
            build = time.perf_counter() - t0
            load, interactive, frame, step = load_time(browser, out.resolve().as_uri())
            print(f"{n:>8,} points: build {build:5.2f} s, html {out.stat().st_size / 1e6:5.2f} MB, "
                  f"navigation to first frame {load / 1000:5.2f} s, to first hover answered {interactive / 1000:5.2f} s "
                  f"(medians of 3), redraw {frame:5.1f} ms/frame")
            print("          steps (s from navigation): " + ", ".join(f"{k} {v / 1000:.2f}" for k, v in step.items())
                  + f", first frame {load / 1000:.2f}, hover answered {interactive / 1000:.2f}")
        browser.close()
        run = make_run(Path(tmp) / f"run{size_at}", n_points=size_at, levels=3, seed=0)
        data = write_explorer(run).read_bytes()
        print(f"{size_at:>8,} points: html file {len(data) / 1e6:.2f} MB ({len(data):,} bytes), "
              f"gzip {len(gzip.compress(data)) / 1e6:.2f} MB")


def screenshot(out: Path, run_dir: Path, hash_: str | None, width: int = 1280, height: int = 800) -> Path:
    """Open the explorer for `run_dir` at width x height and save a PNG. Without --hash, the largest
    top-level cluster is selected so that the panel shows a breakdown."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        html = write_explorer(Path(run_dir), Path(tmp) / "explorer.html")
        with sync_playwright() as p:
            browser = _launch(p)
            page = browser.new_page(viewport={"width": width, "height": height})
            url = html.resolve().as_uri() + (f"#{hash_}" if hash_ else "")
            page.goto(url)
            page.wait_for_function("() => window.__explorerReady", timeout=60000)
            if not hash_:
                page.evaluate("""() => { const tree = document.querySelector('#tree > li[role=treeitem]');
                    if (tree) window.__explorer.select(tree.dataset.id); }""")
            page.wait_for_timeout(400)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--size-at", type=int, default=20_000, help="report the HTML file size at this many points")
    ap.add_argument("--screenshot", type=Path, metavar="PNG", help="save a 1280x800 screenshot of RUN_DIR's explorer")
    ap.add_argument("--hash", help="URL hash state for the screenshot, e.g. 'c=t3&colour=mean:concerning'")
    ap.add_argument("run_dir", nargs="?", type=Path)
    a = ap.parse_args()
    if a.screenshot:
        if not a.run_dir:
            ap.error("--screenshot needs RUN_DIR")
        print(screenshot(a.screenshot, a.run_dir, a.hash))
        return
    bench(a.sizes, a.size_at)


if __name__ == "__main__":
    main()
