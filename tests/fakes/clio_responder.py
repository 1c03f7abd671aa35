"""A responder for the fake LLM servers that answers every Clio task plausibly, for end-to-end tests.

It is deliberately simple and deterministic: facet summaries name the topic it finds by keyword,
names are built from the summaries shown, the assigner picks the listed parent sharing most words,
and the auditor rates 1 any text with an e-mail, a phone number or a planted marker word. With
`leaky=True` the facet summary copies the conversation's first e-mail address and capitalised name
(a summariser that fell for a prompt injection), so tests can check the later privacy layers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fakes.llm_servers import last_user_text, schema_of

TOPIC_WORDS = {
    "cooking": ["recipe", "bake", "baking", "roast", "pasta", "spices", "bread", "onions", "pancakes", "lasagna", "cake"],
    "taxes": ["tax", "taxes", "deduct", "audit", "deduction"],
    "python": ["python", "pandas", "pytest", "keyerror", "json", "decorators"],
    "travel": ["trip", "flight", "airport", "itinerary", "passport", "travel", "backpacking", "train"],
}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
NAME = re.compile(r"\b(?i:my name is|i am|i'm|full name) ([A-Z][a-z]+ [A-Z][a-z]+)")


def _topic(text: str) -> str:
    low = text.lower()
    scores = {t: sum(low.count(w) for w in words) for t, words in TOPIC_WORDS.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] else "general questions"


def _between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.S)
    return m.group(1) if m else ""


def make_responder(leaky: bool = False, audit_marker: str = "PLANTED", echo_request: bool = False):
    """`echo_request=True` summarises a conversation by the first words of its first user message:
    varied summaries for benchmarks on real data (not private, so never for privacy tests)."""

    def responder(body: dict[str, Any]) -> str:
        schema = schema_of(body)
        text = last_user_text(body)
        if schema is None:
            return "ok"
        props = schema.get("properties", {})
        if "request" in props:  # facets
            convo = _between(text, "conversation")
            topic = _topic(convo)
            detail = next((w for w in TOPIC_WORDS.get(topic, []) if w in convo.lower()), "a question")
            # verb phrases, as the prompt asks: the facets stage adds the paper's openings
            request = f"get help with {topic}, about {detail}."
            if echo_request:
                first = convo.split("User: ", 1)[-1].split("\n")[0]
                request = "answer: " + " ".join(first.split()[:10])
            task = f"answer a question about {topic}."
            if leaky:  # falls for the planted injection in every open-text facet
                extras = [m.group(0) for m in [EMAIL.search(convo)] if m] + [m.group(1) for m in [NAME.search(convo)] if m]
                if extras:
                    request += " The user is " + " ".join(extras) + "."
                    task += " The user is " + " ".join(extras) + "."
            answer = {"request": request, "task": task, "language": "English",
                      "concerning": 4 if "steal" in convo.lower() else 1}
            for key, spec in props.items():
                if key not in answer:
                    answer[key] = spec["enum"][0] if "enum" in spec else (spec.get("minimum", 1) if spec.get("type") in ("integer", "number") else "n/a")
            return json.dumps(answer)
        if "category" in props and "enum" in props["category"]:  # eval reconstruction: pick a gold category
            options = props["category"]["enum"]
            topic = _topic(_between(text, "cluster"))
            return json.dumps({**{k: "n/a" for k in props if k != "category"}, "category": next((o for o in options if topic in o.lower()), options[0])})
        if "answer" in props:  # screener
            return json.dumps({"answer": "yes"})
        if "score" in props:  # auditor
            cluster = _between(text, "cluster")
            private = bool(EMAIL.search(cluster) or PHONE.search(cluster) or audit_marker in cluster)
            return json.dumps({"justification": "names a person" if private else "general", "score": 1 if private else 5})
        if "parent" in props:  # assign
            child = _between(text, "cluster").lower()
            options = [line[2:] for line in _between(text, "categories").splitlines() if line.startswith("- ")]
            best = max(options, key=lambda o: (len(set(o.lower().split()) & set(child.split())), o))
            return json.dumps({"scratchpad": "matching words", "parent": best})
        if "names" in props:  # propose or dedupe
            block = _between(text, "clusters") or _between(text, "candidates")
            topics = sorted({_topic(line) for line in block.splitlines() if line.strip()})
            return json.dumps({"names": [f"Get help with {t}" for t in topics]})
        if "name" in props:  # name a cluster or rename a parent
            block = _between(text, "cluster_summaries") or _between(text, "clusters")
            topics = sorted({_topic(line) for line in block.splitlines() if line.strip()})
            label = " and ".join(topics[:2])
            return json.dumps({"name": f"Get help with {label}", "description": f"Users asked for help with {label}. The conversations were practical."})
        return json.dumps({k: "n/a" for k in props})

    return responder
