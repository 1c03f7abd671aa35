"""`convoscope serve`: the explorer for big runs, served from the run directory.

The page is the same app as the self-contained file, but it fetches its data (`/data.json`, gzip when
the browser accepts it) from this local server instead of inlining it. Only two paths exist: `/`
and `/data.json`; nothing else in the run directory is reachable. Binds 127.0.0.1 by default.

Requests must name this server in their Host header: localhost, 127.0.0.1 or [::1], the name given
with `--host` when it is not a loopback or wildcard address, and names given with `--allow-host`;
anything else gets 403. This stops DNS rebinding: a web page on attacker.example whose name is
re-pointed at 127.0.0.1 can make the browser connect here, but its requests say
"Host: attacker.example", so it cannot read /data.json.
"""

from __future__ import annotations

import gzip
import sys
import threading
import webbrowser
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from convoscope.explorer.bundle import build_run_payload, build_served_html, payload_json


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
FORBIDDEN_HOST_BODY = (b"403 Forbidden: this convoscope explorer answers only requests addressed to localhost. "
                       b"To reach it under another name, start `convoscope serve` with --host NAME or --allow-host NAME.\n")


def _host_name(name: str) -> str:
    """A host name as it appears in a Host header: lower case, IPv6 literals in brackets."""
    name = name.strip().lower()
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def allowed_host_names(host: str, allow_hosts: Iterable[str] = ()) -> frozenset[str]:
    """Host-header names the server answers: loopback names, `host` unless it is a wildcard bind
    (0.0.0.0 says nothing about the name clients use), and every `allow_hosts` name."""
    names = set(LOOPBACK_NAMES)
    if _host_name(host) not in _WILDCARD_BINDS:
        names.add(_host_name(host))
    names.update(_host_name(h) for h in allow_hosts if h.strip())
    return frozenset(names)


def host_allowed(header: str | None, names: frozenset[str], port: int) -> bool:
    """Whether a Host header ("name", "name:port", "[v6]:port") names this server. A missing header
    is refused (every browser sends one), as is any port other than the serving one."""
    if not header:
        return False
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header.partition("]")
        name += "]"
        if rest and not rest.startswith(":"):
            return False
        port_text = rest[1:]
    else:
        name, _, port_text = header.partition(":")
    if port_text and port_text != str(port):
        return False
    return name in names


def make_server(run_dir: Path, port: int = 8765, host: str = "127.0.0.1",
                allow_hosts: Iterable[str] = (), facet: str | None = None) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server for the run (every hierarchy, or only `facet`'s); port 0
    picks a free port. Requests whose Host header is not in `allowed_host_names(host, allow_hosts)` get 403."""
    run_dir = Path(run_dir)
    page = build_served_html(run_dir).encode("utf-8")
    data = payload_json(build_run_payload(run_dir, facet))
    data_gz = gzip.compress(data, compresslevel=6)
    names = allowed_host_names(host, allow_hosts)

    class Handler(BaseHTTPRequestHandler):
        server_version = "convoscope-explorer"

        def _forbid(self) -> None:
            self.send_response(403)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(FORBIDDEN_HOST_BODY)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(FORBIDDEN_HOST_BODY)

        def _send(self, body: bytes, ctype: str, gz: bytes | None = None) -> None:
            use_gz = gz is not None and "gzip" in (self.headers.get("Accept-Encoding") or "")
            payload = gz if gz is not None and use_gz else body
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
            if not host_allowed(self.headers.get("Host"), names, int(self.server.server_address[1])):  # type: ignore[index]
                self._forbid()  # DNS rebinding: a foreign page reaching us through a re-pointed name
                return
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


def serve(run_dir: Path, port: int = 8765, host: str = "127.0.0.1", open_browser: bool = True,
          allow_hosts: Iterable[str] = (), facet: str | None = None) -> None:
    """Serve the explorer for `run_dir` (every hierarchy, or only `facet`'s) until interrupted (Ctrl-C)."""
    allow_hosts = list(allow_hosts)
    srv = make_server(Path(run_dir), port=port, host=host, allow_hosts=allow_hosts, facet=facet)
    h, p = srv.server_address[:2]
    shown = "localhost" if h in ("127.0.0.1", "::1") or _host_name(host) in _WILDCARD_BINDS else _host_name(str(h))
    url = f"http://{shown}:{p}/"
    print(f"convoscope explorer for {run_dir} at {url} (Ctrl-C to stop)", file=sys.stderr)
    if _host_name(host) in _WILDCARD_BINDS and not allow_hosts:
        print(f"note: listening on all interfaces ({host or 'all'}), but only requests addressed to localhost are answered; "
              "add --allow-host NAME for each name or address other machines use", file=sys.stderr)
    if open_browser:
        threading.Timer(0.3, lambda: webbrowser.open(url)).start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
