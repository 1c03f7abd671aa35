"""Counts in messages: "1 level", "2 levels", "1,204 conversations"."""

from __future__ import annotations

_IRREGULAR = {"child": "children", "hierarchy": "hierarchies", "analysis": "analyses", "entry": "entries"}


def plural(noun: str) -> str:
    return _IRREGULAR.get(noun, noun + "s")


def count(n: int | float, noun: str, *, many: str | None = None) -> str:
    """`n` and `noun`, the noun plural unless n is 1; integers get thousands separators."""
    number = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{number} {noun if n == 1 else (many or plural(noun))}"
