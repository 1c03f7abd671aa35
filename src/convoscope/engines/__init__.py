"""Engines: where the per-conversation stages run.

The local engine is the stage modules themselves, in this process. The Ray engine (`ray_engine.py`,
`pip install "convoscope[ray]"`) gives the same stages (same names, settings and fingerprints, so a
run resumes on either engine) whose work runs as Ray Data tasks over shards of the input; the
per-cluster stages (naming, hierarchy, privacy, map, aggregates) always run in the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from convoscope.config import Config
    from convoscope.stage_runner import Stage


class LocalEngine:
    """The stages as they are: everything in this process."""

    name = "local"

    def stage(self, stage: "Stage[Any]") -> "Stage[Any]":
        return stage

    def llm_usage(self) -> list[dict[str, Any]]:
        """Usage summaries of LLM clients outside the driver (none here)."""
        return []

    def describe(self) -> dict[str, Any]:
        return {"kind": "local"}


def make_engine(config: "Config", console: "Console") -> Any:
    """The engine `config.engine.kind` names (Ray is imported only when asked for)."""
    if config.engine.kind == "ray":
        from convoscope.engines.ray_engine import RayEngine

        return RayEngine(config, console)
    return LocalEngine()
