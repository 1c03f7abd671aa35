"""Build src/convoscope/data/person_names.txt.gz: given names and surnames in many languages.

Run once, by hand, with Faker installed in any environment (Faker is NOT a runtime dependency):

    python -m venv /tmp/fakervenv && /tmp/fakervenv/bin/pip install faker
    /tmp/fakervenv/bin/python scripts/build_name_lists.py

Source: the person providers of Faker (MIT licence, see src/convoscope/data/LICENSE-faker-names), every
locale. Each output line is `name<TAB>tags`, name lowercased, sorted, one line per name, tags among:

- `g`: a given name in some locale; `s`: a surname in some locale;
- `w`: also a common lowercase word (from Faker's lorem word lists, and words that the bundled demo
  corpus writes in lowercase more often than capitalised), e.g. "rice", "will", "grace";
- `x`: also a non-person proper noun (a country, state, region, city, month or weekday name in Faker's
  address and date providers), e.g. "jordan", "georgia", "may".

`w` and `x` make a name "weak": the detector needs more evidence before it calls it a person.
"""

from __future__ import annotations

import collections
import gzip
import importlib
import json
import pkgutil
import re
import unicodedata
from pathlib import Path

import faker
import faker.providers.address
import faker.providers.date_time
import faker.providers.lorem
import faker.providers.person
from faker import Generator

DATA = Path(__file__).resolve().parent.parent / "src" / "convoscope" / "data"
OUT = DATA / "person_names.txt.gz"
DEMO = DATA / "demo.jsonl.gz"
MAX_CITY_LIST = 700  # longer city lists (every Italian comune) are full of surnames: skip them
WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def locales(package) -> list[str]:
    return [m.name for m in pkgutil.iter_modules(package.__path__)]


def provider(package, locale: str):
    module = importlib.import_module(f"{package.__name__}.{locale}")
    return module.Provider(Generator())  # some lists are properties that need an instance


def strings(value) -> list[str]:
    """The strings of a Faker list, tuple or weighted OrderedDict; nothing for anything else."""
    if isinstance(value, dict):
        value = list(value.keys())
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def normalise(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip().lower())


def add_words(out: dict[str, set[str]], words, tag: str, *, single_words_only: bool = False) -> None:
    """Each word of each entry, tagged (multi-word entries such as 'de la cruz' add their words)."""
    for entry in words:
        parts = WORD.findall(normalise(entry))
        if single_words_only and len(parts) != 1:  # "Santa Maria" does not make "maria" a place
            continue
        for word in parts:
            if len(word) >= 2:
                out[word].add(tag)


def person_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = collections.defaultdict(set)
    for locale in locales(faker.providers.person):
        p = provider(faker.providers.person, locale)
        for attr in dir(type(p)):
            if attr.startswith("first_names"):
                add_words(names, strings(getattr(p, attr, None)), "g")
            elif attr.startswith("last_names"):
                add_words(names, strings(getattr(p, attr, None)), "s")
    return names


def common_words() -> set[str]:
    words: set[str] = set()
    for locale in locales(faker.providers.lorem):
        # lowercase entries only: some lists (cs_CZ) also hold proper nouns such as "John"
        words.update(normalise(w) for w in strings(getattr(provider(faker.providers.lorem, locale), "word_list", None)) if w.islower())
    return words | demo_lowercase_words()


def demo_lowercase_words(min_count: int = 3) -> set[str]:
    """Words the demo corpus (real chat text) writes in lowercase more often than capitalised."""
    lower: collections.Counter[str] = collections.Counter()
    capital: collections.Counter[str] = collections.Counter()
    with gzip.open(DEMO, "rt", encoding="utf-8") as f:
        for line in f:
            for message in json.loads(line)["messages"]:
                for word in WORD.findall(message["content"]):
                    (lower if word.islower() else capital)[word.lower()] += 1
    return {w for w, n in lower.items() if n >= min_count and n > capital[w]}


def proper_nouns() -> set[str]:
    """Countries, states, regions, (short lists of) cities, months and weekdays in every Faker locale."""
    nouns: dict[str, set[str]] = collections.defaultdict(set)
    for locale in locales(faker.providers.address):
        p = provider(faker.providers.address, locale)
        for attr in ("countries", "states", "provinces", "regions", "cities", "city_names"):
            values = strings(getattr(type(p), attr, None))
            if attr in ("cities", "city_names") and len(values) > MAX_CITY_LIST:
                continue
            add_words(nouns, values, "x", single_words_only=True)
    for locale in locales(faker.providers.date_time):
        p = provider(faker.providers.date_time, locale)
        for attr in ("DAY_NAMES", "MONTH_NAMES"):
            add_words(nouns, strings(list(getattr(type(p), attr, {}).values())), "x", single_words_only=True)
    return set(nouns)


def main() -> None:
    names = person_names()
    common = common_words()
    nouns = proper_nouns()
    lines = []
    for name in sorted(names):
        tags = set(names[name]) | ({"w"} if name in common else set()) | ({"x"} if name in nouns else set())
        lines.append(f"{name}\t{''.join(t for t in 'gswx' if t in tags)}\n")
    with gzip.GzipFile(OUT, "wb", mtime=0) as f:  # mtime=0: the same input gives the same bytes
        f.write("".join(lines).encode("utf-8"))
    counts = collections.Counter(t for n in names for t in names[n])
    print(f"{len(lines)} names ({counts['g']} given, {counts['s']} surnames) from Faker {faker.VERSION} -> {OUT} "
          f"({OUT.stat().st_size // 1024} KiB); weak: {sum(n in common for n in names)} common words, "
          f"{sum(n in nouns for n in names)} proper nouns")


if __name__ == "__main__":
    main()
