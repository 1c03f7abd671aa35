"""A deterministic value that satisfies a JSON schema: what the fake servers answer by default."""

from __future__ import annotations

from typing import Any


def example_for(schema: dict[str, Any], root: dict[str, Any] | None = None, name: str = "value") -> Any:
    root = root if root is not None else schema
    if "$ref" in schema:
        return example_for(_resolve(schema["$ref"], root), root, name)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return example_for(schema[key][0], root, name)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example_for(merged, root, name)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: example_for(sub, root, key) for key, sub in properties.items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        item_schema = schema.get("items", {"type": "string"})
        return [example_for(item_schema, root, name) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 2) - 1)
        value = max(low, min(high, 0 if low <= 0 <= high else low))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"example {name}"
    if len(text) < schema.get("minLength", 0):
        text = text.ljust(schema["minLength"], "x")
    return text[: schema.get("maxLength", len(text))]


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported by the fake: {ref}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node
