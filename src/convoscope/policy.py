"""The privacy policy: the rules every published number and word passes, in one place.

The privacy stage decides which clusters are published and the aggregates stage builds the release
(everything an analyst can see); both, and the hierarchy's prompts, use these functions, so a rule
is written once. The rules, as statistical agencies and differential-privacy systems apply them:

- **Contribution bounding.** An account counts toward a threshold with at most
  `max_conversations_per_account` conversations, and no account may supply more than
  `max_account_share` of a group (so 25 conversations of one person plus 4 cover accounts fail).
- **Cells.** A breakdown cell (a category, a histogram bin, a time bucket) is shown only when at least
  `min_accounts` accounts are in it and none supplies more than `max_account_share` of it; the rest are merged into one "other" cell, which itself must pass
  or be empty (the smallest shown cells join it until it does: complementary suppression).
- **Vocabulary.** Every capitalised word (other than one opening a sentence) and every number of a
  published text must be used by at least `min_accounts` accounts of the group it describes; a
  person-like name also needs `public_figure_accounts` accounts across the run.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

import numpy as np

from convoscope.config import PrivacySettings

OTHER = "other"
NAME_WITHHELD = "Name withheld"


# ---------------------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class GroupCounts:
    """Per group: conversations, distinct accounts, bounded conversations and the top account's count."""

    size: np.ndarray
    accounts: np.ndarray
    bounded_size: np.ndarray
    top_account: np.ndarray


def group_counts(labels: np.ndarray, account_index: np.ndarray, n_groups: int, cap: int) -> GroupCounts:
    """`labels` and `account_index` are integer arrays (one per conversation); label -1 means none."""
    keep = labels >= 0
    labels, account_index = labels[keep], account_index[keep]
    size = np.bincount(labels, minlength=n_groups)
    if len(labels) == 0:
        zero = np.zeros(n_groups, dtype=np.int64)
        return GroupCounts(size, zero, zero, zero)
    pairs, per_pair = np.unique(np.stack([labels, account_index], axis=1), axis=0, return_counts=True)
    accounts = np.bincount(pairs[:, 0], minlength=n_groups)
    bounded = np.bincount(pairs[:, 0], weights=np.minimum(per_pair, cap), minlength=n_groups).astype(np.int64)
    top = np.zeros(n_groups, dtype=np.int64)
    np.maximum.at(top, pairs[:, 0], per_pair)
    return GroupCounts(size, accounts, bounded, top)


def size_gate_reason(size: int, accounts: int, bounded_size: int, top_account: int, p: PrivacySettings) -> str | None:
    """Why a group of conversations may not be published on its counts alone, or None."""
    if accounts < p.min_accounts:
        return f"fewer than {p.min_accounts} accounts"
    if bounded_size < p.min_conversations:
        return (f"fewer than {p.min_conversations} conversations when each account counts at most "
                f"{p.max_conversations_per_account}")
    if size and top_account / size > p.max_account_share:
        return f"one account supplies more than {p.max_account_share:.0%} of it"
    return None


def passes_size_gates(size: int, accounts: int, bounded_size: int, top_account: int, p: PrivacySettings) -> bool:
    return size_gate_reason(size, accounts, bounded_size, top_account, p) is None


def group_gate_reason(accounts: np.ndarray, p: PrivacySettings, *, share_cap: bool = True) -> str | None:
    """`size_gate_reason` for one set of conversations given by their accounts (any hashable ids).
    `share_cap=False` for what has no text of its own (a parent, a remainder, the rest of a cluster)."""
    _, index = np.unique(np.asarray(accounts), return_inverse=True)
    c = group_counts(np.zeros(len(accounts), dtype=np.int64), index.reshape(-1), 1, p.max_conversations_per_account)
    gate = p if share_cap else p.model_copy(update={"max_account_share": 1.0})
    return size_gate_reason(int(c.size[0]), int(c.accounts[0]), int(c.bounded_size[0]), int(c.top_account[0]), gate)


def bucket_start(when: datetime, unit: str) -> str:
    """The start (YYYY-MM-DD, UTC) of the day, week (from Monday) or month holding `when`."""
    d = when.astimezone(timezone.utc).date() if when.tzinfo else when.date()
    if unit == "week":
        d = d.fromordinal(d.toordinal() - d.weekday())
    elif unit == "month":
        d = d.replace(day=1)
    return d.isoformat()


def capped_sample(members: np.ndarray, account_index: np.ndarray, per_account: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random sample of at most `size` members with at most `per_account` from any one account."""
    shuffled = rng.permutation(members)
    seen: dict[int, int] = defaultdict(int)
    picked = []
    for i in shuffled:
        a = int(account_index[i])
        if seen[a] < per_account:
            seen[a] += 1
            picked.append(i)
            if len(picked) == size:
                break
    return np.sort(np.asarray(picked, dtype=np.int64))


def per_account_weights(labels: np.ndarray, account_index: np.ndarray, cap: int) -> np.ndarray:
    """Per conversation: 1, or cap / n when its account has n > cap conversations in its group, so each
    account contributes at most `cap` to any per-group sum (e.g. term counts for names)."""
    key = labels.astype(np.int64) * (int(account_index.max(initial=0)) + 1) + account_index
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    n = counts[inverse.reshape(-1)]
    return np.where(n > cap, cap / np.maximum(n, 1), 1.0)


# ----------------------------------------------------------------------------------------- cells
def threshold_cells(cell_accounts: dict[str, Counter], min_accounts: int, max_account_share: float = 1.0,
                    max_cells: int | None = None) -> dict[str, int]:
    """Shown cells of one breakdown; the rest merged into "other", which passes or is absent.

    `cell_accounts[cell]` counts the conversations of each account in the cell. A cell is shown with at
    least `min_accounts` accounts and no account supplying more than `max_account_share` of it. The
    merged cell must itself hold `min_accounts` accounts, so no subtraction isolates a small cell: when
    it holds fewer, whole accounts of the largest shown cell join it (the fewest-conversation accounts
    first) if that cell still passes without them, else the smallest shown cell joins it whole; repeated
    until it does (or every cell is in it). Topping up from the largest cell keeps a 99%-English cluster
    with one undetermined request "English 96, other 5" instead of "other 101": a shown cell may then
    count a few conversations fewer than it has, never more, and "other" says how many are not named."""
    shown, other = threshold_cell_members(cell_accounts, min_accounts, max_account_share, max_cells)
    out = {c: sum(acc.values()) for c, acc in shown.items()}
    if other:
        out[OTHER] = sum(other.values())
    return out


def threshold_cell_members(cell_accounts: dict[str, Counter], min_accounts: int, max_account_share: float = 1.0,
                           max_cells: int | None = None) -> tuple[dict[str, Counter], Counter]:
    """`threshold_cells` as memberships: each shown cell's accounts (conversations per account) and those
    of "other", keyed by (cell, account): its accounts are {account for _, account in other}."""
    cells = dict(cell_accounts)  # the caller's counters are never changed: a donor cell gets a new one

    def passes(acc: Counter) -> bool:
        return len(acc) >= min_accounts and max(acc.values()) <= max_account_share * sum(acc.values())

    order = sorted(cells, key=lambda c: (-sum(cells[c].values()), str(c)))
    shown = [c for c in order if c != OTHER and passes(cells[c])]
    if max_cells is not None:
        shown = shown[:max_cells]
    hidden = [c for c in order if c not in shown]
    other = Counter({(c, a): n for c in hidden for a, n in cells[c].items()})
    hidden_accounts = {a for _, a in other}
    while hidden and len(hidden_accounts) < min_accounts and shown:
        largest = cells[shown[0]]
        needed = min_accounts - len(hidden_accounts)
        movers = set(sorted((a for a in largest if a not in hidden_accounts), key=lambda a: (largest[a], str(a)))[:needed])
        rest = Counter({a: n for a, n in largest.items() if a not in movers})
        if len(movers) == needed and passes(rest):
            other.update({(shown[0], a): largest[a] for a in movers})
            cells[shown[0]] = rest
            break
        smallest = shown.pop()  # fewest conversations
        hidden.append(smallest)
        other.update({(smallest, a): n for a, n in cells[smallest].items()})
        hidden_accounts |= cells[smallest].keys()
    return {c: cells[c] for c in shown}, other


def breakdown_cells(cells: Sequence, accounts: Sequence, min_accounts: int, max_account_share: float = 1.0,
                    max_cells: int | None = None) -> dict[str, int]:
    """`threshold_cells` from per-conversation cell values and accounts (None cells are left out)."""
    members: dict[str, Counter] = defaultdict(Counter)
    for cell, account in zip(cells, accounts):
        if cell is not None:
            members[cell][account] += 1
    return threshold_cells(members, min_accounts, max_account_share, max_cells)


def add_breakdowns(parts: Iterable[dict[str, int]], max_cells: int | None = None) -> dict[str, int]:
    """The sum of published breakdowns, so a parent equals the sum of its parts exactly; beyond
    `max_cells` the smallest cells are merged into "other" (a sum of published cells)."""
    total: dict[str, int] = defaultdict(int)
    for part in parts:
        for cell, n in part.items():
            total[cell] += int(n)
    order = sorted((c for c in total if c != OTHER), key=lambda c: (-total[c], str(c)))
    out = {c: total[c] for c in order[:max_cells] if total[c]} if max_cells is not None else {c: total[c] for c in order if total[c]}
    rest = total.get(OTHER, 0) + sum(total[c] for c in order[len(out):])
    if rest:
        out[OTHER] = rest
    return out


# ------------------------------------------------------------------------------------- numbers
def rounded_edges(values: np.ndarray, n_bins: int = 5) -> list[float]:
    """Inner bin edges from quantiles of the values, rounded to two significant digits: never the raw
    minimum or maximum (an outlier such as an age of 131 is only ever in the open top bin)."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return []
    qs = np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = sorted({_round_sig(float(q)) for q in qs})
    return edges


def _round_sig(x: float, digits: int = 2) -> float:
    if x == 0 or not math.isfinite(x):
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def bin_labels(edges: list[float]) -> list[str]:
    """Labels of the open-ended bins cut at `edges`: "<20", "20-35", ..., ">=80"."""
    if not edges:
        return ["all"]
    out = [f"<{edges[0]:g}"]
    out += [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    out.append(f">={edges[-1]:g}")
    return out


def bin_of(values: np.ndarray, edges: list[float]) -> list[str | None]:
    labels = bin_labels(edges)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right") if edges else np.zeros(len(values), dtype=np.int64)
    return [None if not np.isfinite(v) else labels[i] for v, i in zip(values, idx)]

def link_published(clusters: list[dict], total: int) -> None:
    """Set each published cluster's `share` of `total` conversations and its `children` ids, and order
    the list as the explorer reads it: by level, "other" groups after clusters, larger first (in place).
    Shared by the threshold release (stages/aggregates.py) and the DP release (dp_release.py)."""
    children: dict[str | None, list[str]] = {}
    for c in clusters:
        c["share"] = round(c["size"] / total, 6) if total else 0.0
        children.setdefault(c["parent"], []).append(c["id"])
    for c in clusters:
        c["children"] = children.get(c["id"], [])
    clusters.sort(key=lambda c: (c["level"], c["kind"] == "other", -c["size"]))



# ----------------------------------------------------------------------------------- vocabulary
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def _norm(word: str) -> str:
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return w


_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*)$")


def checked_tokens(text: str) -> list[str]:
    """The words of a published text that must be supported: capitalised words, numbers and any token
    with a digit or an inner capital (ids, handles). A capitalised word that opens a sentence is
    grammar, not a name, unless it is a listed given name or surname."""
    from convoscope.person_names import name_table

    names = name_table()
    text = text or ""
    out = []
    for m in _TOKEN.finditer(text):
        w = m.group(0)
        if any(ch.isdigit() for ch in w) or any(ch.isupper() for ch in w[1:]):
            out.append(w)
        elif w[0].isupper():
            opens_sentence = _SENTENCE_START.search(text[:m.start()]) is not None
            if not opens_sentence or _listed_name(names.get(w.lower(), "")):
                out.append(w)
    return out


def _listed_name(tags: str) -> bool:
    """A given name or surname that is not also a common word (tags of person_names.name_table)."""
    return ("g" in tags or "s" in tags) and "w" not in tags


class VocabularySupport:
    """Which accounts used each word in the texts (facet summaries) of a run, to check that the words
    of a published name or description are used by enough accounts of the group it describes.

    The index holds only the words actually checked: indexing every word of every text was most of
    the checker's cost at a million conversations, for the few hundred words names ever hold. A pass
    for a set of words skips, in C, the ASCII texts whose lowercased tokens include none of the forms
    of those words, and tokenises the rest as before, so each word's rows are exactly what an index of
    every word would hold. `prepare` indexes the words of many
    texts in one pass; after `FULL_INDEX_AFTER` passes for words not prepared, every word is indexed at
    once (as before), so a caller that checks texts one by one never pays more than a few passes extra."""

    FULL_INDEX_AFTER = 4

    def __init__(self, texts: Iterable[str], account_index: np.ndarray, common_accounts: int, allowed_words: Iterable[str] = ()):
        self._texts = texts if isinstance(texts, list) else list(texts)
        self._accounts = np.asarray(account_index)
        self._common_accounts = common_accounts
        self._allowed = {_norm(w) for w in allowed_words}
        self._postings: dict[str, np.ndarray] = {}  # word -> rows using it (words in no text are absent)
        self._indexed: set[str] = set()  # words looked up so far (with or without postings)
        self._common: dict[str, bool] = {}
        self._everything = False
        self.passes = 0  # passes over the texts so far (the full index counts as one)

    def prepare(self, words: Iterable[str]) -> None:
        """Index these words (as written in a text to check, e.g. its `checked_tokens`) in one pass."""
        self._index({_norm(w) for w in words})

    def _index(self, words: set[str]) -> None:
        missing = words - self._indexed - self._allowed
        if not missing or self._everything:
            return
        if self.passes >= self.FULL_INDEX_AFTER:
            self._index_everything()
            return
        self.passes += 1
        found: dict[str, list[int]] = {w: [] for w in missing}
        forms = {form for w in missing for form in _lowercase_forms(w)}
        for row, text in enumerate(self._texts):
            if not text:
                continue
            # an ASCII text's tokens lowercased are the tokens of the text lowercased (no character changes
            # class or length), so without one of the forms it holds none of the words: skipped in C
            if text.isascii() and forms.isdisjoint(_TOKEN.findall(text.lower())):
                continue
            for w in {_norm(t) for t in _TOKEN.findall(text)} & found.keys():
                found[w].append(row)
        for w, rows in found.items():
            if rows:
                self._postings[w] = np.asarray(rows, dtype=np.int64)
        self._indexed |= missing

    def _index_everything(self) -> None:
        postings: dict[str, list[int]] = defaultdict(list)
        for row, text in enumerate(self._texts):
            for w in {_norm(t) for t in _TOKEN.findall(text or "")}:
                postings[w].append(row)
        self._postings = {w: np.asarray(rows, dtype=np.int64) for w, rows in postings.items()}
        self._everything = True
        self.passes += 1

    def _is_common_word(self, w: str) -> bool:
        if w not in self._common:
            rows = self._postings.get(w)
            self._common[w] = rows is not None and len(np.unique(self._accounts[rows])) >= self._common_accounts
        return self._common[w]

    def is_common(self, text: str) -> bool:
        """Every checked word of `text` is used by `common_accounts` accounts across the run (a public
        figure's name, for instance) or is part of our own prompts."""
        words = [_norm(w) for w in checked_tokens(text)]
        self._index(set(words))
        return all(w in self._allowed or self._is_common_word(w) for w in words)

    def unsupported(self, text: str, members: np.ndarray, min_accounts: int) -> list[str]:
        """Words of `text` that fewer than `min_accounts` accounts among `members` (conversation rows)
        used, other than words of our own prompts."""
        words = list(dict.fromkeys(checked_tokens(text)))
        self._index({_norm(w) for w in words})
        bad = []
        member_mask = None
        for word in words:
            w = _norm(word)
            if w in self._allowed:
                continue
            rows = self._postings.get(w)
            if rows is not None:
                if member_mask is None:
                    member_mask = np.zeros(len(self._accounts), dtype=bool)
                    member_mask[members] = True
                inside = rows[member_mask[rows]]
                if len(np.unique(self._accounts[inside])) >= min_accounts:
                    continue
            bad.append(word)
        return bad


def _lowercase_forms(word: str) -> list[str]:
    """The lowercase tokens `_norm` maps to `word` (it drops at most a final "'s", then one final "s")."""
    return [form for form in (word, word + "s", word + "'s", word + "s's") if _norm(form) == word]


def prompt_vocabulary() -> set[str]:
    """Words of our own prompt templates: scaffolding a model may reuse, never user data."""
    from importlib import resources

    words: set[str] = set()
    for path in resources.files("convoscope.prompts").iterdir():
        if path.name.endswith(".txt"):
            words.update(w for w in _TOKEN.findall(path.read_text(encoding="utf-8")) if not any(ch.isdigit() for ch in w))
    return words


class TextChecker:
    """The deterministic checks of a published name and description (LLM mode)."""

    def __init__(self, texts: list[str], account_index: np.ndarray, p: PrivacySettings) -> None:
        self.p = p
        self.vocabulary = VocabularySupport(texts, account_index, common_accounts=p.public_figure_accounts,
                                                   allowed_words=prompt_vocabulary() | {NAME_WITHHELD, "Other (withheld)"})

    def prepare(self, texts: Iterable[str]) -> None:
        """Index, in one pass over the run's texts, every word that checking these texts looks up (their
        checked words and those of their person-like spans): call it before checking many texts."""
        from convoscope.person_names import find_person_names

        words: list[str] = []
        for text in texts:
            words += checked_tokens(text)
            words += [w for span in find_person_names(text) for w in checked_tokens(span)]
        self.vocabulary.prepare(words)

    def problems(self, text: str, members: np.ndarray) -> list[str]:
        """Words that make `text` unpublishable for the conversations `members`."""
        from convoscope.person_names import find_person_names

        bad = self.vocabulary.unsupported(text, members, self.p.min_accounts)
        for span in find_person_names(text):
            # a person-like name passes only when it is common across the run (public figures)
            if not self.vocabulary.is_common(span):
                bad.append(span)
        return list(dict.fromkeys(bad))
