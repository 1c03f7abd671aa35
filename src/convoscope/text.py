"""Making data-derived text safe to show: cluster names, descriptions, facet values, paths.

Names are written by models from user text, so they may hold anything a user typed. Two helpers:

- `clean_text(s)`: plain, single-line text. Removes terminal escape sequences (whole CSI/OSC/DCS
  sequences, not just the ESC byte, so no colour, hyperlink, title or clipboard command survives),
  other control characters (C0, DEL, C1), bidirectional overrides and invisible characters used to
  disguise text, then collapses whitespace.
- `markup_safe(s)`: `clean_text` plus rich's markup escaping, for every string printed through rich
  (a name like "[/]" would otherwise crash the printer, "[link=...]" would become a hyperlink).
"""

from __future__ import annotations

import re

from rich.markup import escape

# Terminal escape sequences (ECMA-48), removed whole. String-type sequences (OSC, DCS, SOS, PM, APC)
# run to BEL or ST; an unterminated one is removed to the end of the text.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"                    # CSI: colours, cursor movement, screen clearing
    r"|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: hyperlinks, window title, clipboard
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"    # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]?"                          # any other escape (two-character forms); a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"                     # 8-bit CSI
    r"|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # 8-bit OSC, DCS, SOS, PM, APC
)
# Control characters: C0 (whitespace ones become spaces first), DEL and C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WHITESPACE_CONTROL = re.compile(r"[\t\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")
# Bidirectional embeddings, overrides, isolates and marks (the "Trojan Source" characters), and
# invisible characters with no place in a name: zero-width space, word joiner, BOM, invisible
# operators, Mongolian vowel separator, soft hyphen and Unicode tag characters ("ASCII smuggling").
_INVISIBLE = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u200b\u2060-\u2064\ufeff\u180e\u00ad"
                        r"\U000e0000-\U000e007f]")
# ZWNJ / ZWJ are needed inside words in Persian, Indic scripts and emoji sequences: kept only
# between two visible characters, once; anywhere else (edges, next to spaces, in runs) removed.
_JOINER_RUN = re.compile(r"[\u200c\u200d]+")


def _keep_joiner(m: re.Match[str]) -> str:
    s, start, end = m.string, m.start(), m.end()
    inside = 0 < start and end < len(s) and not s[start - 1].isspace() and not s[end].isspace()
    return m.group()[0] if inside and len(m.group()) == 1 else ""


def clean_text(s: str) -> str:
    """`s` as plain, single-line, visible text (see the module docstring). Not an escaper: use
    `markup_safe` for rich, HTML escaping for HTML."""
    if not s:
        return ""
    s = _ESCAPE_SEQUENCE.sub("", str(s))
    s = _WHITESPACE_CONTROL.sub(" ", s)
    s = _CONTROL.sub("", s)
    s = _INVISIBLE.sub("", s)
    s = _JOINER_RUN.sub(_keep_joiner, s)
    return " ".join(s.split())


def markup_safe(s: object) -> str:
    """Data-derived text ready to embed in a rich markup string: cleaned, then markup-escaped."""
    return escape(clean_text("" if s is None else str(s)))


def clean_name(name: str, max_words: int = 10) -> str:
    """A model-written name as published: no control or escape characters, at most `max_words` words."""
    words = clean_text(str(name)).strip(" .\"'").split(" ")
    return " ".join(words[:max_words])


def clean_description(description: str) -> str:
    return clean_text(str(description))
