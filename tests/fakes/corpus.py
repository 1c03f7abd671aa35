"""Small synthetic conversation sets with known structure, written as OpenAI chat JSONL."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

TOPICS: dict[str, list[str]] = {
    "cooking": [
        "How long should I roast a whole chicken at 200 degrees?", "Give me a vegetarian lasagna recipe for six people.",
        "What can I substitute for eggs when baking a chocolate cake?", "How do I make fluffy pancakes from scratch?",
        "What spices go well in a lentil curry?", "How do I keep homemade bread from going stale?",
        "Suggest a quick pasta sauce using canned tomatoes.", "How do I caramelise onions without burning them?",
    ],
    "taxes": [
        "Can I deduct my home office expenses on my income tax return?", "How do capital gains taxes work when I sell shares?",
        "What is the deadline for filing quarterly estimated taxes?", "Do I need to pay tax on freelance income under a threshold?",
        "How do I report cryptocurrency sales on my tax return?", "What records should I keep for a tax audit?",
        "Is a charitable donation tax deductible if I take the standard deduction?", "How are tax brackets applied to my salary?",
    ],
    "python": [
        "Why does my Python script raise KeyError when reading the dictionary?", "How do I fix 'list index out of range' in a Python loop?",
        "Explain Python decorators with a simple example.", "How can I read a CSV file with pandas and filter rows?",
        "My Python function returns None instead of the list, why?", "How do I write unit tests with pytest for a class?",
        "What is the difference between a Python list and a tuple?", "How do I parse JSON from an API response in Python?",
    ],
    "travel": [
        "What should I pack for a two week hiking trip in the mountains?", "Suggest an itinerary for three days in a coastal city.",
        "How early should I arrive at the airport for an international flight?", "Tips for dealing with jet lag after a long flight?",
        "Is travel insurance worth buying for a short vacation?", "How do I find cheap train tickets across the country?",
        "What are good budget options for accommodation when backpacking?", "How do I renew my passport before a trip abroad?",
    ],
}
SUFFIXES = ["", " Thanks!", " Please keep it short.", " I'm a beginner.", " Explain step by step.", " Any tips?"]


def make_records(per_topic: int = 60, accounts: int = 40, seed: int = 0, start: datetime | None = None, distinct: bool = False) -> list[dict]:
    """`distinct=True` numbers every question, so no two conversations are exact duplicates (ingest drops
    those): large corpora of the same few topics."""
    rng = random.Random(seed)
    start = start or datetime(2026, 1, 5, tzinfo=timezone.utc)
    records = []
    for topic, prompts in TOPICS.items():
        for i in range(per_topic):
            text = (f"Question {i}: " if distinct else "") + rng.choice(prompts) + rng.choice(SUFFIXES)
            records.append({
                "id": f"{topic}-{i}",
                "user": f"acct-{rng.randrange(accounts)}",
                "created_at": (start + timedelta(hours=rng.randrange(24 * 28))).isoformat(),
                "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": f"Here is some help about {topic}."}],
                "metadata": {"topic": topic},
            })
    rng.shuffle(records)
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
