"""Mask obvious identifiers before any model sees the text (an extra layer, not the main defence).

Clio's main protections are the privacy-preserving prompts, the aggregation thresholds and the
auditor; masking catches the identifiers a regular expression can find, cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_STREET_EN = (r"Street|St|Road|Rd|Lane|Ln|Avenue|Ave|Drive|Dr|Close|Way|Court|Ct|Place|Pl|Boulevard|Blvd|Terrace|"
              r"Crescent|Square|Sq|Row|Gardens|Parkway|Highway|Hwy|Grove|Mews|Walk")
_STREET_ROMANCE = (r"Calle|C/|Avenida|Avda\.?|Plaza|Paseo|Camino|Carrera|Via|Viale|Piazza|Corso|Vicolo|Rua|Travessa|Largo|"
                   r"Praça|Alameda")
_STREET_FR = r"rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|route|cours"
_STREET_SUFFIX = r"straße|strasse|str\.|weg|gasse|allee|platz|ring|damm|ufer|straat|laan|gracht|plein|kade|singel|steeg|dreef"
_CAP = r"[A-ZÀ-ÖØ-ÞĀ-Ž][\w'’-]*"
_NUMBER = r"\d{1,5}[a-zA-Z]?"
_ID_CUE = (r"passport|national id|id number|id no|identity card|identity number|ausweis(?:nummer)?|personalausweis|"
           r"reisepass|dni|nie|nif|cpf|rg|pesel|tc kimlik|kimlik no|bsn|codice fiscale|nino|national insurance|"
           r"social security|sozialversicherungsnummer|steuer-?id|tax id|matricule|sécurité sociale|licen[cs]e number|"
           r"driver'?s licen[cs]e")

# The most specific patterns first: an IBAN or a card is not a phone number.
_PATTERNS: list[tuple[str | Callable[[re.Match[str]], str], re.Pattern[str]]] = [
    ("[EMAIL]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("[URL]", re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)),
    (lambda m: _iban_or_keep(m), re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    ("[IP]", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    # international (+44 ..., 0044 ...) and national numbers with a trunk 0, in groups: checked by digit count
    (lambda m: _grouped_phone_or_keep(m), re.compile(r"(?<![\w+])(?:\+|00(?=[1-9]))?\(?0?\d{1,5}\)?(?:(?:[ .-]|\s?\(0\)\s?)?(?:\(\d{1,4}\)|\d{1,8})){0,6}(?![\w])")),
    ("[CARD]", re.compile(r"\b(?:\d[ -]?){13,19}\b")),
    ("[SSN]", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    (lambda m: _id_or_keep(m), re.compile(rf"(?i:\b(?:{_ID_CUE})\b)(?:\s*(?:number|no\.?|nr\.?|n[º°o]\.?|#))?\s*(?:is\s+|:\s*|#\s*)?"
                        r"(?P<id>[A-Z0-9](?:[A-Z0-9]|[ .-](?=[A-Z0-9])){4,20})")),
    # national shapes without a leading 0 or +: US, Brazil, Spain, India
    ("[PHONE]", re.compile(r"(?<![\w+])(?:\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}([.-])\d{3}\1\d{4}|\d{3} \d{3} \d{4}|"
                           r"\(\d{2}\) ?9?\d{4}-?\d{4}|[6789]\d{2}(?: \d{2}){3}|[6789]\d{2} \d{3} \d{3}|[6-9]\d{4} \d{5})(?![\w])")),
    ("[POSTCODE]", re.compile(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) \d[A-Z]{2}\b")),  # UK, with its space
    ("[ADDRESS]", re.compile(rf"\b{_NUMBER},?\s+(?:{_CAP}\s+){{1,4}}(?:{_STREET_EN})\b\.?")),  # 42 Wobbleton Lane
    ("[ADDRESS]", re.compile(rf"\b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?i:{_STREET_FR})\s+(?:(?:de|du|des|la|le|l'|d')\s*)*"
                             rf"{_CAP}(?:\s+{_CAP}){{0,3}}")),  # 12 rue de la Paix
    ("[ADDRESS]", re.compile(rf"\b(?:{_STREET_ROMANCE})\s+(?:(?:de|del|la|los|las|da|do|dos|das|di|della)\s+)*"
                             rf"{_CAP}(?:\s+{_CAP}){{0,3}},?\s+(?:n[º°o.]\s*)?{_NUMBER}\b")),  # Calle Mayor 12
    ("[ADDRESS]", re.compile(rf"\b[A-ZÄÖÜ][\w'’-]*(?:{_STREET_SUFFIX})\s+{_NUMBER}\b")),  # Hauptstraße 5
    ("[ADDRESS]", re.compile(rf"\bul\.\s*{_CAP}(?:\s+{_CAP}){{0,2}}\s+{_NUMBER}(?:/\d+)?")),  # ul. Polna 3/4
    ("[ADDRESS]", re.compile(rf"\b{_CAP}\s+(?:Sokak|Sok\.|Caddesi|Cad\.)\s*(?:No[:.]?\s*)?\d{{1,4}}")),  # Lale Sokak No: 5
]


def _iban_or_keep(m: re.Match[str]) -> str:
    """Only a number whose IBAN check digits are right (mod 97 = 1) is an IBAN."""
    compact = m.group().replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return "[IBAN]" if len(compact) >= 15 and int(number) % 97 == 1 else m.group()


def _id_or_keep(m: re.Match[str]) -> str:
    """The number after an id cue, when it holds at least 4 digits ("passport number X1234567")."""
    ident = m.group("id")
    if sum(c.isdigit() for c in ident) < 4:
        return m.group()
    return m.group()[: m.start("id") - m.start()] + "[ID]"


def _grouped_phone_or_keep(m: re.Match[str]) -> str:
    """A run of digit groups that starts with + / 00 (8-15 digits) or a trunk 0 (9-12 digits) is a phone.

    A run that goes on past the longest plausible number ("+44 7700 900123 2024 100") keeps its tail.
    """
    text = m.group()
    international = text.startswith(("+", "00"))
    if not (international or text.lstrip("(").startswith("0")):
        return text
    low, high = (8, 15) if international else (9, 12)
    digits = 0
    end = 0
    for g in re.finditer(r"\d+", text):
        if digits + len(g.group()) > high:
            break
        digits += len(g.group())
        end = g.end()
    if digits < low or not _separators_look_like_phone(text[:end]):
        return text
    return "[PHONE]" + text[end:]


def _separators_look_like_phone(number: str) -> bool:
    """'0.5.10' or '2024.01' are not phones: dots are accepted only in the regular French/US style."""
    return "." not in number or re.fullmatch(r"[+\d]+(?:\.\d+)+", number.replace(" ", "")) is not None


_DIGIT = re.compile(r"\d")
_NEEDS_NO_DIGIT = 2  # e-mails and URLs; every later pattern needs a digit, so text without one skips them


# Part of the facets and embed fingerprints: a change of the patterns re-scrubs cached runs.
SCRUB_VERSION = 2


def scrub(text: str) -> str:
    patterns = _PATTERNS if _DIGIT.search(text) else _PATTERNS[:_NEEDS_NO_DIGIT]
    for replacement, pattern in patterns:  # a replacement is a token, or a function that checks the match
        text = pattern.sub(replacement, text)
    return text
