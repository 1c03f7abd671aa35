"""Prompt templates, one file per task. Rendered with `string.Template` ($name) so JSON braces need no escaping."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from string import Template


@lru_cache(maxsize=None)
def load(name: str) -> Template:
    text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return Template(text)


def render(name: str, **values: object) -> str:
    return load(name).substitute({k: str(v) for k, v in values.items()})


# The JSON answer of every task that writes a cluster name (name, rename, rewrite).
NAME_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
    "required": ["name", "description"],
    "additionalProperties": False,
}
