"""Extractive names from phrases: k-anonymous 1-3 word n-grams per base cluster, ranked by class-based
TF-IDF and diversified by maximal marginal relevance over their embeddings (as KeyBERT and BERTopic do).

A phrase may name a cluster only when at least `min_accounts` accounts *of that cluster* used it (the
index already holds only phrases `min_accounts` accounts of the whole input used, and no person names,
see keywords.py), each account counting at most `max_conversations_per_account` conversations. Phrases
common in most clusters (platform boilerplate, UI strings pasted into prompts, "write", "code") never
name one. Counts are of conversations containing a phrase, not of occurrences, so one long pasted
document cannot fill a name with its words ("import self").

Every name and description is checked with `policy.TextChecker` (the checks LLM names pass) before it
is used; a part that fails (a language name, a taxonomy label) is left out, and a name that still fails
falls back to "Miscellaneous requests".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from convoscope import policy
from convoscope.config import PrivacySettings
from convoscope.keywords import KeywordIndex, class_tfidf_of_counts, group_term_counts, keyword_name, phrase_name
from convoscope.languages import UNDETERMINED

CANDIDATES = 15  # phrases per cluster, by c-TF-IDF, that MMR chooses from
SHOWN = 5  # phrases in a description
DIVERSITY = 0.2  # MMR: 0 ranks by relevance only, 1 by novelty only (0.2 kept names on topic on the demo; 0.35 and 0.5 pulled in 'best way', 'tips')
BOILERPLATE_SHARE = 0.5  # a phrase in at least this share of clusters (and 3) is boilerplate ...
BOILERPLATE_MIN_DOC_SHARE = 0.01  # ... counting a cluster when at least 1% of its conversations use the phrase
UNDETERMINED_LANGUAGES = {UNDETERMINED, policy.OTHER}


@dataclass
class ClusterPhrases:
    """What the naming stage writes: a name and description per cluster, the per-cluster counts that the
    hierarchy names parents from, and what was left out."""

    names: list[tuple[str, str]]
    counts: sp.csr_matrix  # clusters x phrases: conversations using the phrase, bounded per account; zero where not k-anonymous
    # in the cluster or boilerplate
    boilerplate: int  # phrases left out as boilerplate
    fallbacks: int  # names that failed the text checks and fell back to a shorter text


def cluster_account_support(presence: sp.csr_matrix, labels: np.ndarray, account_index: np.ndarray, k: int) -> sp.csr_matrix:
    """clusters x phrases: distinct accounts of the cluster whose conversations use the phrase."""
    width = int(account_index.max(initial=0)) + 1
    pair, pair_of_doc = np.unique(labels.astype(np.int64) * width + account_index, return_inverse=True)
    n = len(labels)
    docs_to_pairs = sp.csr_matrix((np.ones(n, dtype=np.float32), (pair_of_doc.reshape(-1), np.arange(n))), shape=(len(pair), n))
    used = (docs_to_pairs @ presence).tocsr()
    used.data[:] = 1
    pairs_to_clusters = sp.csr_matrix((np.ones(len(pair), dtype=np.float32), (pair // width, np.arange(len(pair)))), shape=(k, len(pair)))
    return (pairs_to_clusters @ used).tocsr()


def boilerplate_columns(presence: sp.csr_matrix, labels: np.ndarray, k: int) -> np.ndarray:
    """Phrases used by at least 1% of the conversations of at least half the clusters (and of 3)."""
    if k < 3:
        return np.zeros(0, dtype=np.int64)
    sizes = np.maximum(np.bincount(labels, minlength=k), 1).astype(np.float32)
    share = (sp.diags(1.0 / sizes) @ group_term_counts(presence, labels, k)).tocsr()
    share.data = (share.data >= BOILERPLATE_MIN_DOC_SHARE).astype(np.float32)
    spread = np.asarray(share.sum(axis=0)).ravel()
    return np.flatnonzero(spread >= max(3, math.ceil(BOILERPLATE_SHARE * k)))


def mmr(relevance: np.ndarray, vectors: np.ndarray, n: int, diversity: float = DIVERSITY) -> list[int]:
    """Maximal marginal relevance: indices picked one by one, each maximising
    (1 - diversity) * relevance - diversity * (highest cosine to a phrase already picked)."""
    picked: list[int] = []
    left = list(range(len(relevance)))
    while left and len(picked) < n:
        if picked:
            redundancy = (vectors[left] @ vectors[picked].T).max(axis=1)
        else:
            redundancy = np.zeros(len(left))
        score = (1 - diversity) * relevance[left] - diversity * redundancy
        picked.append(left.pop(int(np.argmax(score))))
    return picked


def _word_key(word: str) -> str:
    """A crude stem, enough to see "insult", "insults" and "insulting" as one word."""
    return word[:5] if len(word) >= 5 else word


def _not_contained(terms: list[str]) -> list[str]:
    """Terms in rank order without repeats: a phrase whose words (stemmed) are all in one ranked above it
    is dropped ("card" after "lost card"), and one that contains a phrase ranked above it takes its place
    ("write story" replaces "story")."""
    out: list[str] = []
    keys: list[set[str]] = []
    for term in terms:
        key = {_word_key(w) for w in term.split()}
        if any(key <= k for k in keys):
            continue
        inside = [i for i, k in enumerate(keys) if k <= key]
        if inside:
            out[inside[0]], keys[inside[0]] = term, key
            for i in reversed(inside[1:]):
                del out[i], keys[i]
        else:
            out.append(term)
            keys.append(key)
    return out


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_in_words(n: int) -> str:
    """1 to 999,999 in English words ("forty-five", "two hundred", "three thousand")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + number_in_words(n % 100))
    return number_in_words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + number_in_words(n % 1000))


def share_in_words(share: float) -> str:
    """'about one conversation in twenty-five', with one in N rounded to two significant digits: digits would
    need the support of `min_accounts` accounts of the cluster (policy.checked_tokens)."""
    if share >= 0.75:
        return "nearly all conversations"
    if share >= 0.4:
        return "about half of the conversations"
    if share < 1e-5:
        return "fewer than one conversation in a hundred thousand"
    n = 1 / share
    digits = 10 ** max(0, int(math.floor(math.log10(n))) - (1 if n < 100 else 0))
    return f"about one conversation in {number_in_words(int(round(n / digits) * digits))}"


def cluster_languages(languages: Sequence[str], accounts: Sequence, p: PrivacySettings) -> list[str]:
    """The languages of a cluster that pass the cell rule of the published language breakdown."""
    cells = policy.breakdown_cells(languages, accounts, p.min_accounts, p.max_account_share, max_cells=3)
    return [c for c in cells if c not in UNDETERMINED_LANGUAGES]


def describe(phrases: list[str], languages: list[str], share: float, label: str | None) -> list[tuple[str, str]]:
    """Candidate (name, description) pairs, the most informative first; the caller keeps the first that
    passes the text checks."""
    head, details = (label, phrases[:2]) if label else (phrases[0], phrases[1:3])
    name = phrase_name(head, details)
    typical = f"Typical phrases: {', '.join(phrases)}."
    amount = f"{share_in_words(share)[:1].upper()}{share_in_words(share)[1:]} of the run."
    said = f"Language: {languages[0]}." if len(languages) == 1 else (f"Languages: {'; '.join(languages)}." if languages else "")
    candidates = [(name, " ".join(t for t in (typical, said, amount) if t)), (name, f"{typical} {amount}")]
    if label:
        plain_name, _ = keyword_name(phrases)
        candidates += [(plain_name, f"{typical} {amount}")]
    return candidates


def name_clusters(index: KeywordIndex, labels: np.ndarray, k: int, account_index: np.ndarray, texts: list[str],
                  languages: Sequence[str], centroids: np.ndarray, encode: Callable[[list[str]], np.ndarray] | None,
                  p: PrivacySettings, labeller: Callable[[np.ndarray], list[str | None]] | None = None) -> ClusterPhrases:
    """Names of the k base clusters. `encode` embeds phrases in the space of `centroids` (None: c-TF-IDF
    order only); `labeller` maps centroids to taxonomy labels or None (convoscope.taxonomy)."""
    presence = index.counts.copy().tocsr()
    presence.data[:] = 1
    weights = policy.per_account_weights(labels, account_index, p.max_conversations_per_account)
    counts = group_term_counts(sp.diags(weights.astype(np.float32)) @ presence, labels, k)
    support = cluster_account_support(presence, labels, account_index, k)
    # keep only cells whose phrase at least min_accounts accounts of the cluster used
    keep = support.multiply(support >= p.min_accounts).tocsr()
    keep.data[:] = 1
    counts = counts.multiply(keep).tocsr()
    boilerplate = boilerplate_columns(presence, labels, k)
    ranked = counts.copy()
    if len(boilerplate):
        mask = np.ones(counts.shape[1], dtype=np.float32)
        mask[boilerplate] = 0
        ranked = (ranked @ sp.diags(mask)).tocsr()
    ranked.eliminate_zeros()
    scores = class_tfidf_of_counts(ranked)

    candidates = []
    for c in range(k):
        row = scores.getrow(c)
        order = row.indices[np.argsort(-row.data, kind="stable")]
        candidates.append(_not_contained([str(index.terms[i]) for i in order[:CANDIDATES * 2]])[:CANDIDATES])
    chosen = _diversify(candidates, centroids, encode)
    labels_of = labeller(centroids) if labeller is not None else [None] * k
    sizes = np.bincount(labels, minlength=k)
    total = max(int(sizes.sum()), 1)
    members_of = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[members_of], np.arange(k + 1))
    language_of = np.asarray(languages, dtype=object)
    prompt_words = {policy._norm(w) for w in policy.prompt_vocabulary()}
    candidates_of: list[list[tuple[str, str]]] = []
    for c in range(k):
        members = members_of[bounds[c]:bounds[c + 1]]
        langs = cluster_languages(language_of[members].tolist(), account_index[members].tolist(), p) if chosen[c] else []
        candidates_of.append(describe(chosen[c], langs, sizes[c] / total, labels_of[c]) if chosen[c] else [])
    # the texts the checker may see: each cluster's candidates up to the first that passes without it,
    # indexed in one pass over the run's texts (the checker indexes only the words it is asked about)
    needs_checker: dict[str, bool] = {}
    for candidates_c in candidates_of:
        for name, desc in candidates_c:
            text = f"{name}\n{desc}"
            needs_checker[text] = not ((not policy.checked_tokens(text) and not _person_like(text)) or _only_prompt_words(text, prompt_words))
            if not needs_checker[text]:
                break
    checker: policy.TextChecker | None = None
    if any(needs_checker.values()):
        checker = policy.TextChecker(texts, account_index, p)
        checker.prepare([text for text, needed in needs_checker.items() if needed])
    names, fallbacks = [], 0
    for c in range(k):
        members = members_of[bounds[c]:bounds[c + 1]]
        if not chosen[c]:
            names.append(keyword_name([]))
            continue
        picked = None
        for i, (name, desc) in enumerate(candidates_of[c]):
            text = f"{name}\n{desc}"
            if not needs_checker[text] or (checker is not None and not checker.problems(text, members)):
                picked = (name, desc)
                fallbacks += i > 0
                break
        if picked is None:
            fallbacks += 1
            picked = keyword_name([])
        names.append(picked)
    return ClusterPhrases(names, ranked, len(boilerplate), fallbacks)


def _only_prompt_words(text: str, prompt_words: set[str]) -> bool:
    """Every word the checks of `text` would look up (its checked words and those of any person-like span
    in it) is a word of our own prompts, which `policy.TextChecker` always allows ("Language: English."
    flags "English", a listed surname): the checker would pass the text, so it need not be built. Its
    index of every word of every conversation was a third of the stage's time at 300,000."""
    from convoscope.person_names import find_person_names

    words = policy.checked_tokens(text) + [w for span in find_person_names(text) for w in policy.checked_tokens(span)]
    return all(policy._norm(w) in prompt_words for w in words)


def _person_like(text: str) -> bool:
    from convoscope.person_names import find_person_names

    return bool(find_person_names(text))


def _diversify(candidates: list[list[str]], centroids: np.ndarray, encode: Callable[[list[str]], np.ndarray] | None) -> list[list[str]]:
    """SHOWN phrases per cluster: MMR over the candidates' embeddings, relevance being the cosine to the
    cluster's centroid (BERTopic's MaximalMarginalRelevance); c-TF-IDF order without an embedder."""
    if encode is None:
        return [c[:SHOWN] for c in candidates]
    unique = sorted({t for c in candidates for t in c})
    if not unique:
        return [[] for _ in candidates]
    vectors = np.asarray(encode(unique), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row = {t: i for i, t in enumerate(unique)}
    out: list[list[str]] = []
    for c, terms in enumerate(candidates):
        if not terms:
            out.append([])
            continue
        v = vectors[[row[t] for t in terms]]
        relevance = v @ centroids[c]
        out.append([terms[i] for i in mmr(relevance, v, SHOWN)])
    return out
