"""Prompt templates, one file per task. Rendered with `string.Template` ($name) so JSON braces need no escaping.

A task file holds the system prompt, a line `=== user message ===`, and the user message. The system
prompt is the static part (instructions, answer format, run-level settings such as the screener's
question): identical on every call of a run, so providers' prompt caching can reuse it. The user
message holds only the per-item data between tags. Tasks of the naming model put the shared
`naming_system` rules first. `facets_system` and `facets` are two files (the facet list depends on
the configured custom facets).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

USER_MESSAGE = "=== user message ==="


@lru_cache(maxsize=None)
def load(name: str) -> Template:
    text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return Template(text.strip("\n"))


def render(name: str, **values: object) -> str:
    return load(name).substitute({k: str(v) for k, v in values.items()})


@lru_cache(maxsize=None)
def _parts(name: str) -> tuple[Template, Template]:
    system, sep, user = load(name).template.partition(f"\n{USER_MESSAGE}\n")
    if not sep:
        raise ValueError(f"prompt {name}.txt has no '{USER_MESSAGE}' line between its system prompt and user message")
    return Template(system.strip("\n")), Template(user.strip("\n"))


def system_prompt(name: str, *, shared: str | None = None, **values: object) -> str:
    """The task's static part, after the `shared` rules file when given (e.g. naming_system)."""
    text = _parts(name)[0].substitute({k: str(v) for k, v in values.items()})
    return f"{render(shared)}\n\n{text}" if shared else text


def user_prompt(name: str, **values: object) -> str:
    return _parts(name)[1].substitute({k: str(v) for k, v in values.items()})


# The JSON answer of every task that writes a cluster name (name, rename, rewrite).
NAME_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
    "required": ["name", "description"],
    "additionalProperties": False,
}

# ----------------------------------------------------------------------------- answer checks
# Small (1-3B) models copy a prompt's scaffolding into their answers: "The task is to the assistant is
# asked to ...", descriptions about "the contrastive cluster". These checks reject such answers; the
# client asks again with the feedback (LLMRequest.answer_check). They look for the prompt's own words
# only, so ordinary answers on any topic pass.
_SCAFFOLDING = re.compile(
    r"overall request|the task is to|is asked to|\bplaceholder\b|<[a-z_ ]+>|general description|\bcontrastive\b|"
    r"\b(?:nearby|neighbou?ring|contrast(?:ing)?) (?:clusters?|summaries)\b|\bother clusters\b|\bcluster summaries\b|"
    r"\b(?:these|those) summaries\b|\bat most (?:ten|\d+) words\b",
    re.I,
)
_SUBJECT_START = re.compile(r"^(?:(?:the )?(?:user|assistant)|the (?:task|request))\b", re.I)


def scaffolding_in(text: str) -> str | None:
    """The first piece of prompt scaffolding found in `text`, or None."""
    m = _SCAFFOLDING.search(text)
    return m.group(0) if m else None


def summary_problem(key: str, value: Any, opening: str) -> str | None:
    """A facet summary (request, task) that is not a clean verb phrase after `opening`, or None if it is."""
    if not isinstance(value, str) or not value.strip():
        return None  # the schema decides about types; an empty summary is recorded as missing
    text = value.strip()
    if text.lower().startswith(opening.lower()):
        text = text[len(opening):].strip()
    text = re.sub(r"^to\s+", "", text, flags=re.I)
    if (found := scaffolding_in(text)) is not None:
        return f'"{key}" repeats the instructions ({found}); describe the conversation itself'
    if _SUBJECT_START.match(text):
        return f'"{key}" must start with a verb, without a subject such as the user or the assistant'
    return None


def facet_answer_problem(answer: Any, openings: dict[str, str]) -> str | None:
    if not isinstance(answer, dict):
        return None
    problems = [p for key, opening in openings.items() if (p := summary_problem(key, answer.get(key), opening))]
    return "; ".join(problems) or None


def name_answer_problem(answer: Any) -> str | None:
    """A cluster name or description that talks about the prompt (clusters, summaries, the comparison)."""
    if not isinstance(answer, dict):
        return None
    for key in ("name", "description"):
        value = answer.get(key)
        if isinstance(value, str) and (found := scaffolding_in(value)) is not None:
            return f'"{key}" repeats the instructions ({found}); describe what the conversations were about'
    return None
