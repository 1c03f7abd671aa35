"""`convoscope serve`: the explorer for big runs, served from the run directory.

The page is the same app as the self-contained file, but it fetches its data (`/data.json`, gzip when
the browser accepts it) from this local server instead of inlining it. Only two paths exist: `/`
and `/data.json`; nothing else in the run directory is reachable. Binds 127.0.0.1 by default.
"""

from __future__ import annotations

import gzip
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from convoscope.explorer.bundle import build_payload, build_served_html, payload_json


def make_server(run_dir: Path, port: int = 8765, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server for the run; port 0 picks a free port."""
    run_dir = Path(run_dir)
    page = build_served_html(run_dir).encode("utf-8")
    data = payload_json(build_payload(run_dir))
    data_gz = gzip.compress(data, compresslevel=6)

    class Handler(BaseHTTPRequestHandler):
        server_version = "convoscope-explorer"

        def _send(self, body: bytes, ctype: str, gz: bytes | None = None) -> None:
            use_gz = gz is not None and "gzip" in (self.headers.get("Accept-Encoding") or "")
            payload = gz if use_gz else body
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy",
                             "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                             "connect-src 'self'; img-src data:")
            if use_gz:
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if path in ("/", "/index.html"):
                self._send(page, "text/html; charset=utf-8")
            elif path == "/data.json":
                self._send(data, "application/json", data_gz)
            else:
                self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, fmt: str, *args) -> None:  # keep the terminal quiet
            pass

    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    return srv


def serve(run_dir: Path, port: int = 8765, host: str = "127.0.0.1", open_browser: bool = True) -> None:
    """Serve the explorer for `run_dir` until interrupted (Ctrl-C)."""
    srv = make_server(Path(run_dir), port=port, host=host)
    h, p = srv.server_address[:2]
    url = f"http://{'localhost' if h in ('127.0.0.1', '::1') else h}:{p}/"
    print(f"convoscope explorer for {run_dir} at {url} (Ctrl-C to stop)", file=sys.stderr)
    if open_browser:
        threading.Timer(0.3, lambda: webbrowser.open(url)).start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
