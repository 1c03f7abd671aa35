"""Synthetic inputs with planted effects for the analyses tests (imported by tests/test_analyses*.py)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
END = datetime(2024, 6, 30, tzinfo=timezone.utc)
NEW_TOPIC_FROM = datetime(2024, 4, 1, tzinfo=timezone.utc)  # crypto mining appears only from here on
BURST_DAY = datetime(2024, 5, 15, tzinfo=timezone.utc)  # tax questions burst on this day (week of 2024-05-13)
SPAMMER = "acct-spammer"

DISHES = ["chicken curry", "beef lasagna", "banana bread", "vegetable soup", "sourdough bread", "pad thai", "apple pie", "risotto",
          "fish tacos", "pancakes", "ramen", "chili con carne", "carrot cake", "paella", "falafel"]
COOKING = [
    "How do I make {d} for {n} people? I have a normal oven and a stove.",
    "My {d} always comes out too dry. What am I doing wrong when I cook it?",
    "Can you give me a step by step recipe for {d} without dairy?",
    "What spices go best with {d}, and when should I add them while cooking?",
    "How long can I keep leftover {d} in the fridge, and how do I reheat it?",
    "I want to bake {d} for a party of {n}. How much flour, sugar and butter do I need?",
    "What can I substitute for eggs when I cook {d}?",
    "Which wine or drink pairs well with homemade {d} for dinner?",
    "Is it possible to prepare {d} the day before and cook it tomorrow?",
    "Why does my {d} taste bland even though I follow the recipe and add salt?",
]
TAX_ITEMS = ["home office", "rental income", "capital gains from stocks", "freelance income", "student loan interest", "charitable donations",
             "medical expenses", "a side business", "cryptocurrency sales", "child care costs"]
TAX = [
    "Can I deduct {t} on my income tax return if I earned {n} thousand dollars last year?",
    "How do I report {t} to the IRS, and which tax form should I use?",
    "What is the deadline to file taxes for {t}, and what happens if I file late?",
    "Do I need to pay estimated quarterly taxes on {t}?",
    "My accountant says {t} is not deductible. Is that right under the current tax rules?",
    "How much tax will I owe on {t} if I am married filing jointly?",
    "Can I amend last year's tax return to include {t}?",
    "What records do I need to keep for {t} in case of a tax audit?",
]
ERRORS = ["KeyError", "TypeError: 'NoneType' object is not subscriptable", "IndexError: list index out of range", "ModuleNotFoundError",
          "AttributeError: 'str' object has no attribute 'append'", "RecursionError", "ValueError: invalid literal for int()", "ZeroDivisionError"]
PYTHON = [
    "My Python script crashes with {e} when I loop over a dictionary. How do I fix it?",
    "Why does pandas raise {e} when I read this CSV file with read_csv?",
    "I get {e} in my Flask app after a request. Here is the traceback, what does it mean?",
    "How can I debug {e} in a Python function that parses JSON from an API?",
    "Pytest fails with {e} only on CI but not on my laptop. Why could that be?",
    "What is the most pythonic way to avoid {e} when a list might be empty?",
    "My Django view returns {e} when the form is submitted. How do I handle it?",
]
CITIES = ["Madrid", "Barcelona", "Sevilla", "Lisboa", "Roma", "Buenos Aires", "Ciudad de México", "Cusco", "Cartagena", "Valencia"]
TRAVEL_ES = [
    "¿Cuáles son los mejores lugares para visitar en {c} durante {n} días de vacaciones?",
    "Quiero viajar a {c} con mi familia. ¿Qué barrio me recomiendas para alojarnos?",
    "¿Cuánto dinero necesito para una semana de viaje en {c}, incluyendo hotel y comida?",
    "¿Cuál es la mejor época del año para viajar a {c} y evitar a los turistas?",
    "Hazme un itinerario de {n} días en {c} con museos, restaurantes y paseos.",
    "¿Cómo llego desde el aeropuerto al centro de {c} en transporte público?",
]
TRAVEL_EN = [
    "What are the best places to visit in {c} during a {n} day vacation?",
    "Plan a {n} day itinerary for {c} with museums, restaurants and walks.",
    "Which neighbourhood in {c} is best to stay in with kids?",
]
COINS = ["Bitcoin", "Ethereum Classic", "Monero", "Litecoin", "Ravencoin", "Kaspa"]
CRYPTO = [
    "Is it still profitable to mine {k} with a {n} GPU rig given current electricity prices?",
    "Which mining pool should I join to mine {k}, and how are payouts calculated?",
    "How do I set up mining software for {k} on Windows with NVIDIA cards?",
    "My {k} mining rig keeps overheating. How should I configure fan speed and power limits?",
    "What hash rate can I expect when mining {k} with {n} graphics cards?",
]
PRODUCTS = ["wireless earbuds", "a standing desk", "an air fryer", "a yoga mat", "a phone case", "a coffee grinder", "running shoes",
            "a backpack", "an electric toothbrush", "a desk lamp"]
REVIEW = "Write a glowing five star customer review for {p} that I can post on the shop website. Mention fast delivery and great quality."
SEO = ("You are a marketing assistant. Write 10 SEO keywords for the online shop of customer {name} (order number {n}). The shop sells "
       "handmade goods and ships worldwide. Return the keywords as a comma separated list ranked by expected search volume, with no explanations.")
NAMES = ["Anna", "Bob", "Carla", "Dmitri", "Erik"]


def _when(r: random.Random, start: datetime = START, end: datetime = END) -> datetime:
    return start + timedelta(seconds=r.uniform(0, (end - start).total_seconds()))


def make_records(seed: int = 0, *, include_new_topic: bool = True, include_burst: bool = True) -> list[dict]:
    r = random.Random(seed)
    pool = [f"acct-{i:03d}" for i in range(100)]
    recs: list[dict] = []

    def add(text: str, account: str, when: datetime, topic: str, flagged: bool | None = None) -> None:
        meta = {"topic": topic}
        if flagged is not None:
            meta["flagged"] = flagged
        recs.append({"id": f"c{len(recs):05d}", "user": account, "created_at": when.isoformat().replace("+00:00", "Z"),
                     "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": f"Here is an answer (ref {len(recs)})."}], "metadata": meta})

    for _ in range(120):
        add(r.choice(COOKING).format(d=r.choice(DISHES), n=r.randint(2, 12)), r.choice(pool), _when(r), "cooking", r.random() < 0.02)
    for _ in range(120):
        add(r.choice(TAX).format(t=r.choice(TAX_ITEMS), n=r.randint(20, 200)), r.choice(pool), _when(r), "tax", r.random() < 0.02)
    if include_burst:
        for _ in range(40):
            add(r.choice(TAX).format(t=r.choice(TAX_ITEMS), n=r.randint(20, 200)), r.choice(pool),
                BURST_DAY + timedelta(seconds=r.uniform(0, 86000)), "tax", r.random() < 0.02)
    for _ in range(120):
        add(r.choice(PYTHON).format(e=r.choice(ERRORS)), r.choice(pool), _when(r), "python", r.random() < 0.02)
    for _ in range(80):
        add(r.choice(TRAVEL_ES).format(c=r.choice(CITIES), n=r.randint(3, 10)), r.choice(pool[:60]), _when(r), "travel", r.random() < 0.02)
    for _ in range(30):
        add(r.choice(TRAVEL_EN).format(c=r.choice(CITIES), n=r.randint(3, 10)), r.choice(pool), _when(r), "travel", r.random() < 0.02)
    if include_new_topic:
        for _ in range(80):
            add(r.choice(CRYPTO).format(k=r.choice(COINS), n=r.randint(2, 12)), r.choice(pool), _when(r, NEW_TOPIC_FROM), "crypto", r.random() < 0.6)
    for _ in range(120):  # one account, one template, many times
        add(REVIEW.format(p=r.choice(PRODUCTS)), SPAMMER, _when(r), "reviews", r.random() < 0.02)
    for _ in range(20):
        add(REVIEW.format(p=r.choice(PRODUCTS)), r.choice(pool), _when(r), "reviews", r.random() < 0.02)
    seo_accounts = r.sample(pool, 40)
    for i in range(50):  # the same template with small variations, from many accounts
        add(SEO.format(name=r.choice(NAMES), n=r.randint(1000, 9999)), seo_accounts[i % 40], _when(r), "seo", r.random() < 0.02)
    return recs


def write_input(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records), encoding="utf-8")
    return path


def small_config(cpc: int = 30):
    from convoscope.config import Config

    cfg = Config()
    cfg.cluster.conversations_per_cluster = cpc
    cfg.privacy.min_accounts = 3
    cfg.privacy.min_conversations = 5
    cfg.embedding.cache = False
    return cfg
