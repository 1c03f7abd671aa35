"""Mask obvious identifiers before any model sees the text (an extra layer, not the main defence).

Clio's main protections are the privacy-preserving prompts, the aggregation thresholds and the
auditor; masking catches the identifiers a regular expression can find, cheaply.
"""

from __future__ import annotations

import re

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("[EMAIL]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("[URL]", re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)),
    ("[IP]", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    ("[CARD]", re.compile(r"\b(?:\d[ -]?){13,19}\b")),
    ("[PHONE]", re.compile(r"(?<![\w])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{3,4}[\s.-]\d{3,4}(?:[\s.-]\d{2,4})?(?![\w])")),
    ("[SSN]", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
]


def scrub(text: str) -> str:
    for token, pattern in _PATTERNS:
        text = pattern.sub(token, text)
    return text
