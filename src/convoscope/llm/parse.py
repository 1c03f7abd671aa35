"""Structured output that survives real models: find the JSON in an answer, then validate it.

Models wrap JSON in code fences or <json> tags, or add a sentence before or after it.
`parse_structured` copes with these and checks the result against the request's JSON schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_TAG = re.compile(r"<json>(.*?)</json>", re.DOTALL | re.IGNORECASE)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ParseResult:
    value: Any = None
    feedback: str | None = None  # full message for the model (may quote its own output); None when valid
    error: str | None = None  # short description safe to store: never quotes the answer's content

    @property
    def ok(self) -> bool:
        return self.feedback is None


def extract_json(text: str) -> Any:
    """The first JSON object or array found in `text`; raises ValueError when there is none."""
    for inner in (*_TAG.findall(text), *_FENCE.findall(text), text):
        value = _first_json_value(inner)
        if value is not _MISSING:
            return value
    raise ValueError("the answer contains no JSON object")


_MISSING = object()


def _first_json_value(text: str) -> Any:
    """Decode at each '{' or '[' in turn, so leading and trailing prose are ignored."""
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        return value
    return _MISSING


_VALIDATORS: dict[int, tuple[Any, jsonschema.Draft202012Validator]] = {}  # id(schema) -> (schema, validator)


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """One validator per schema object (stages reuse theirs): building one per answer cost more than validating."""
    entry = _VALIDATORS.get(id(schema))
    if entry is None or entry[0] is not schema:  # holding the schema keeps its id from being reused
        if len(_VALIDATORS) > 256:
            _VALIDATORS.clear()
        entry = _VALIDATORS[id(schema)] = (schema, jsonschema.Draft202012Validator(schema))
    return entry[1]


def parse_structured(text: str, schema: dict[str, Any]) -> ParseResult:
    try:
        value = extract_json(text)
    except ValueError as exc:
        return ParseResult(feedback=f"{exc}.", error=str(exc))
    validator = _validator(schema)
    if validator.is_valid(value):
        return ParseResult(value=value)
    errors = list(validator.iter_errors(value))
    if not errors:
        return ParseResult(value=value)
    worst = best_match(errors)
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in worst.absolute_path)
    return ParseResult(
        feedback=f"at {where}: {worst.message}",
        error=f"output does not match the schema at {where} ({worst.validator} failed)",
    )
