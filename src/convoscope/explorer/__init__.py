"""The explorer: an offline, self-contained HTML app over a run's published aggregates and points."""

from convoscope.explorer.bundle import build_explorer_html, build_payload, write_explorer
from convoscope.explorer.server import make_server, serve

__all__ = ["build_explorer_html", "build_payload", "write_explorer", "serve", "make_server"]
