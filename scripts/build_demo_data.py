"""Build the demo data set bundled in the package (src/convoscope/data/demo.jsonl.gz).

Sources (real conversations, licences copied next to the file):
- Anthropic hh-rlhf, harmless-base test split: 2,312 human-assistant dialogues (MIT), the "chosen" transcript.
- Arena-Hard v2 questions: 750 real chatbot prompts in several languages (Apache-2.0).

Neither source has account ids or timestamps. So that the demo exercises the privacy thresholds and
the time views, this script assigns SYNTHETIC ones, seeded: 600 accounts with a skewed activity
distribution, and times spread over eight weeks. They are labelled synthetic in each record's metadata.
Usage: python scripts/build_demo_data.py ../shared/data OUTPUT.jsonl.gz
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_messages(transcript: str) -> list[dict]:
    parts = TURN.split(transcript)
    messages = []
    for speaker, text in zip(parts[1::2], parts[2::2]):
        text = text.strip()
        if text:
            messages.append({"role": "user" if speaker == "Human" else "assistant", "content": text})
    return messages


def main(shared: Path, out: Path) -> None:
    rng = random.Random(7)
    records = []
    with gzip.open(shared / "hh-rlhf-harmless" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            msgs = hh_messages(json.loads(line)["chosen"])
            if msgs:
                records.append({"id": f"hh-{i:05d}", "messages": msgs, "metadata": {"source": "hh-rlhf-harmless"}})
    with open(shared / "arena-hard-v2" / "question.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            records.append({"id": f"arena-{q['uid']}", "messages": [{"role": "user", "content": q["prompt"]}],
                            "metadata": {"source": "arena-hard-v2", "category": q["subcategory"]}})
    start = datetime(2026, 9, 1, tzinfo=timezone.utc)
    weights = [1 / (a + 1) ** 0.8 for a in range(600)]
    for rec in records:
        rec["user"] = f"demo-account-{rng.choices(range(600), weights)[0]:03d}"
        rec["created_at"] = (start + timedelta(seconds=rng.randrange(56 * 86400))).isoformat()
        rec["metadata"]["synthetic_account_and_time"] = True
    rng.shuffle(records)
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} conversations to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
