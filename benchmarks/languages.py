"""The language facet on labelled sets: how often a text is given a language other than its own, or none.

    python benchmarks/languages.py [--batch 256] [FILE ...]   (default: CLINC150, BANKING77, SIB-200 in ../shared/data)

Each file is JSONL with `text` and `language` (ISO 639-1). Texts go through `languages.detect_languages`
in batches of `--batch` in file order, as the facets stage sends them (256 conversations), and through the
rule before issue 14 (one text at a time: at least 12 letters and fastText's probability 0.3). Printed per
set: the share labelled with a wrong language, the share left undetermined ("Unknown"), and the share right.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convoscope import languages

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT = [DATA / "clinc150" / "clinc150.jsonl", DATA / "banking77" / "banking77.jsonl", DATA / "sib200" / "sib200.jsonl"]


def before_issue_14(text: str) -> str:
    """The rule this replaced: any text of 12 letters whose best guess has probability 0.3."""
    letters, codes, probabilities = languages._guesses(text)
    if letters < 12 or not codes or probabilities[0] < 0.3:
        return languages.UNDETERMINED
    return languages.NAMES.get(codes[0], codes[0])


def rates(gold: list[str], got: list[str]) -> dict[str, float]:
    n = max(1, len(gold))
    unknown = sum(g == languages.UNDETERMINED for g in got)
    right = sum(g == w for g, w in zip(got, gold))
    return {"wrong": (len(gold) - unknown - right) / n, "undetermined": unknown / n, "right": right / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    for path in args.files:
        records = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
        texts = [r["text"] for r in records]
        gold = [languages.NAMES.get(r["language"], r["language"]) for r in records]
        before = [before_issue_14(t) for t in texts]
        after = [name for i in range(0, len(texts), args.batch) for name in languages.detect_languages(texts[i:i + args.batch])]
        print(f"{path.name}: {len(texts):,} texts, {len(set(gold))} language(s)")
        for label, got in (("before", before), ("after", after)):
            r = rates(gold, got)
            print(f"  {label:6}  wrong language {r['wrong']:.2%}  undetermined {r['undetermined']:.2%}  right {r['right']:.2%}")


if __name__ == "__main__":
    main()
