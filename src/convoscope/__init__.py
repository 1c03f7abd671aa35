"""convoscope: privacy-preserving insights into real-world AI use (an open Clio).

    from convoscope import Pipeline, Config, Result, load_run   # the Python API: docs/api.md
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Config", "Pipeline", "Result", "__version__", "load_run"]

if TYPE_CHECKING:
    from convoscope.api import Pipeline, Result, load_run
    from convoscope.config import Config


def __getattr__(name: str) -> Any:
    # imported on first use, so that `convoscope --help` does not load the pipeline
    if name in ("Pipeline", "Result", "load_run"):
        from convoscope import api

        return getattr(api, name)
    if name == "Config":
        from convoscope.config import Config

        return Config
    raise AttributeError(f"module 'convoscope' has no attribute {name!r}")
