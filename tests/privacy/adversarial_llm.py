"""An adversarial stand-in for every LLM role, for the fake OpenAI server (tests/fakes/llm_servers.py).

It is as unhelpful to privacy as a model can be while still following the output schemas:

- facets: the summary COPIES the conversation: "The user's overall request for the assistant is to
  <the first 25 words of the user's message>", names, numbers and streets included. In a shared call
  (several conversations, `facets.conversations_per_call`) every summary also copies the names and
  numbers of EVERY OTHER conversation of the call, first (so they survive the stage's length cut), and
  it OBEYS an injection in one conversation ("for the other conversations write X and rate them N"):
  the other conversations of the call get X as request and task and N as concerning score;
- cluster names and descriptions copy the capitalised words and numbers of the summaries shown;
- parent proposals, dedupe and renames copy the capitalised words and numbers of the children shown;
- the assigner picks the listed parent sharing most words;
- asked to rewrite a name that failed the word checks, it leaves out exactly the words named (but keeps
  `PARENT_MARKER`, so a parent the auditor fails stays failing);
- the AUDITOR PASSES EVERYTHING (score 5), with a justification carrying `JUSTIFICATION_MARKER`
  (which must never be published). With `parent_marker=True` every parent name (propose, dedupe and
  rename answers) carries `PARENT_MARKER`, and the auditor rates 1 any text containing it (attack 10).

Tasks are told apart by their prompts (src/convoscope/prompts/*.txt).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Callable

from fakes.llm_servers import last_user_text, schema_of
from fakes.shared_calls import entry_schema, shared_call_ids, shared_conversations

JUSTIFICATION_MARKER = "AUDITJUSTIFICATIONMARKER"
PARENT_MARKER = "Parentmarkerword"
REQUEST_OPENING = "The user's overall request for the assistant is to"
TASK_OPENING = "The task is to"
_STOP = {"The", "A", "An", "I", "It", "My", "Help", "Users", "User", "What", "How", "Can", "Is", "Do", "Please", "This", "And", "They", "Users", "Help"}
_COMMON = {"the", "a", "an", "to", "of", "for", "and", "is", "is", "my", "me", "i", "in", "on", "at", "with", "what", "how", "user's",
           "overall", "request", "assistant", "task", "user", "can", "you", "please", "it", "do", "be", "get", "help", "about", "that"}


def between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.S)
    return m.group(1) if m else ""


def identifying_tokens(text: str) -> list[str]:
    """Capitalised words (not 'The' etc.) and numbers, in order of first appearance."""
    out = []
    for tok in re.findall(r"[A-Za-z][\w'-]*|\d[\d:.,/-]*\d|\d", text):
        if (tok[0].isupper() and tok not in _STOP) or tok[0].isdigit():
            out.append(tok.rstrip(".,"))
    return list(dict.fromkeys(out))


def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z][a-z'-]+", text.lower()) if w not in _COMMON and len(w) > 2]


def _copy_from(lines: list[str], n_tokens: int = 6) -> tuple[str, str]:
    """A name and a description copying the most frequent identifying tokens and content words."""
    tokens: Counter = Counter()
    content: Counter = Counter()
    for line in lines:
        for t in identifying_tokens(line):
            tokens[t] += 1
        for w in set(_content_words(line)):
            content[w] += 1
    top_tokens = [t for t, _ in tokens.most_common(n_tokens)]
    top_words = [w for w, _ in content.most_common(4)]
    name = " ".join(["Help with", *top_words[:3], *top_tokens[:3]]).strip()
    description = ("Users asked about " + ", ".join(top_words) + (". They mentioned " + ", ".join(top_tokens) if top_tokens else "")
                   + ". The conversations were practical.")
    return name, description


def user_message(conversation: str) -> str:
    first = conversation.split("User: ", 1)[-1]
    return first.split("\n\nAssistant:", 1)[0]


INJECTION = re.compile(r"for the other conversations write (.+?) and rate them (\d)", re.I)


def _facets_answer(conversation: str, props: dict[str, Any], leaked: str = "") -> dict[str, Any]:
    """One conversation's facets, copying its user's words (after `leaked`, words copied from elsewhere)."""
    copied = " ".join(user_message(conversation).split()[:25])
    if leaked:
        copied = f"{leaked} {copied}"
    answer: dict[str, Any] = {"request": f"{REQUEST_OPENING} {copied}", "task": f"{TASK_OPENING} answer: {copied}",
                              "language": "English", "concerning": 1}
    for key, spec in props.items():
        if key not in answer:
            answer[key] = spec["enum"][0] if "enum" in spec else (spec.get("minimum", 1) if spec.get("type") in ("integer", "number") else copied)
    return answer


def _shared_facets(ids: list[str], text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A shared call answered as badly as possible: every summary carries the other conversations'
    names and numbers, and an injection in one conversation rewrites the others' answers."""
    conversations = shared_conversations(text)
    tokens = {cid: identifying_tokens(user_message(conv)) for cid, conv in conversations.items()}
    answer: dict[str, Any] = {}
    for cid in ids:
        conversation = conversations.get(cid, "")
        leaked = " ".join(t for other, found in tokens.items() if other != cid for t in found)
        answer[cid] = _facets_answer(conversation, entry_schema(schema, cid).get("properties", {}), leaked)
    for cid, conversation in conversations.items():
        if (m := INJECTION.search(user_message(conversation))) is not None:
            for other in ids:
                if other != cid:
                    answer[other].update(request=f"{REQUEST_OPENING} {m.group(1)}", task=f"{TASK_OPENING} {m.group(1)}", concerning=int(m.group(2)))
    return answer


def make_adversarial_responder(parent_marker: bool = False) -> Callable[[dict[str, Any]], str]:
    def responder(body: dict[str, Any]) -> str:
        schema = schema_of(body)
        text = last_user_text(body)
        if schema is None:
            return "ok"
        props = schema.get("properties", {})
        if ids := shared_call_ids(body):  # a shared facets call: copy across conversations
            return json.dumps(_shared_facets(ids, text, schema))
        if "request" in props:  # facets: copy the user's words
            return json.dumps(_facets_answer(between(text, "conversation"), props))
        if "answer" in props:  # screener
            return json.dumps({"answer": "yes"})
        if "score" in props:  # auditor: passes everything (unless the parent marker is asked for)
            cluster = between(text, "cluster")
            score = 1 if (parent_marker and PARENT_MARKER.lower() in cluster.lower()) else 5
            return json.dumps({"justification": f"{JUSTIFICATION_MARKER}: the text {cluster[:80]!r} looks general", "score": score})
        if "parent" in props:  # assign
            child = set(re.findall(r"\w+", between(text, "cluster").lower()))
            options = [line[2:] for line in between(text, "categories").splitlines() if line.startswith("- ")]
            best = max(options, key=lambda o: (len(set(re.findall(r"\w+", o.lower())) & child), o)) if options else ""
            return json.dumps({"scratchpad": "matching words", "parent": best})
        if "names" in props:  # propose (<clusters>) or dedupe (<candidates>)
            m = re.search(r"between (\d+) and (\d+)", text)
            low, high = (int(m.group(1)), int(m.group(2))) if m else (1, 3)
            if "<candidates>" in text:
                lines = [ln[2:] for ln in between(text, "candidates").splitlines() if ln.startswith("- ")]
                names = lines[:high]
            else:
                lines = [ln[2:] for ln in between(text, "clusters").splitlines() if ln.startswith("- ")]
                want = max(low, min(high, (low + high) // 2))
                groups = [lines[i::want] for i in range(want)]
                names = []
                for g in groups:
                    if g:
                        name, _ = _copy_from(g)
                        names.append(name)
            if parent_marker:
                names = [f"{n} {PARENT_MARKER}" if PARENT_MARKER not in n else n for n in names]
            return json.dumps({"names": list(dict.fromkeys(names))})
        if "name" in props and "Words to leave out:" in text:  # rewrite a text that failed the word checks
            name, _, description = between(text, "cluster").partition(": ")
            listed = text.split("Words to leave out:", 1)[1].split("\n", 1)[0]
            # it leaves out the words named, except the parent marker: an auditor-failing parent stays failing
            drop = {w.strip().lower() for w in listed.split(",")} - ({PARENT_MARKER.lower()} if parent_marker else set())

            def without(t: str) -> str:
                # a word left out keeps the sentence's end ("low." -> "."), as a model rewriting would
                kept = [w if w.strip(".,;:!?'\"").lower() not in drop else w[len(w.rstrip(".!?")):] for w in t.split()]
                return re.sub(r"\s+([.!?])", r"\1", " ".join(w for w in kept if w))

            return json.dumps({"name": without(name), "description": without(description)})
        if "name" in props:  # name a base cluster (<cluster_summaries>) or rename a parent (<clusters>)
            if "<cluster_summaries>" in text:
                lines = [ln for ln in between(text, "cluster_summaries").splitlines() if ln.strip()]
                name, description = _copy_from(lines)
            else:
                lines = [ln[2:] for ln in between(text, "clusters").splitlines() if ln.startswith("- ")]
                name, description = _copy_from(lines)
                if parent_marker:
                    name = f"{name} {PARENT_MARKER}"
            return json.dumps({"name": name, "description": description})
        return json.dumps({k: "n/a" for k in props})

    return responder


HIERARCHY_PROMPT_MARKERS = {
    "propose": "Propose broader parent categories",
    "dedupe": "Merge them into about",
    "assign": "Which of these higher-level categories fits it best?",
    "rename": "were grouped under one higher-level category",
}


def hierarchy_prompts(requests: list[dict[str, Any]]) -> list[str]:
    """The user prompts of the hierarchy tasks (propose, dedupe, assign, rename) among recorded requests."""
    out = []
    for body in requests:
        text = last_user_text(body)
        if any(marker in text for marker in HIERARCHY_PROMPT_MARKERS.values()):
            out.append(text)
    return out
