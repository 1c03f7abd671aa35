"""Extractive names: distinctive terms per group (class-based TF-IDF) over a k-anonymous vocabulary.

Only terms used by at least `min_accounts` distinct accounts in the whole input may appear in any
name or description, so a rare name, e-mail or number can never surface. Digits never form terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

# Words that describe every request and so never tell clusters apart.
_EXTRA_STOP = {"please", "help", "need", "want", "like", "know", "tell", "thanks", "thank", "hi", "hello", "hey",
               "just", "ok", "okay", "yes", "don", "does", "did", "doesn", "didn", "ve", "ll", "re", "im", "ur", "u",
               "email", "url", "phone", "card", "ip", "ssn"}  # the last ones are our own masking tokens
STOP_WORDS = sorted(ENGLISH_STOP_WORDS | _EXTRA_STOP)
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"


@dataclass
class KeywordIndex:
    """Term counts per document, restricted to the k-anonymous vocabulary."""

    counts: sp.csr_matrix  # documents x allowed terms
    terms: np.ndarray  # allowed terms
    vocabulary_size: int  # before the k-anonymity filter
    allowed_terms: int


def build_keyword_index(texts: list[str], accounts: list[str], min_accounts: int) -> KeywordIndex:
    vectorizer = CountVectorizer(stop_words=STOP_WORDS, token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), lowercase=True, dtype=np.float32)
    try:
        counts = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no term at all (e.g. every text empty)
        return KeywordIndex(sp.csr_matrix((len(texts), 0), dtype=np.float32), np.array([], dtype=object), 0, 0)
    terms = vectorizer.get_feature_names_out()
    _, account_index = np.unique(np.asarray(accounts), return_inverse=True)
    owner = sp.csr_matrix((np.ones(len(texts), dtype=np.float32), (account_index, np.arange(len(texts)))))
    used = counts.copy()
    used.data[:] = 1
    support = np.asarray(((owner @ used) > 0).sum(axis=0)).ravel()
    allowed = np.flatnonzero(support >= min_accounts)
    return KeywordIndex(counts[:, allowed].tocsr(), terms[allowed], len(terms), len(allowed))


def group_term_counts(counts: sp.csr_matrix, labels: np.ndarray, n_groups: int) -> sp.csr_matrix:
    """Rows of `counts` (documents, or smaller groups) summed into `n_groups` groups by `labels`."""
    membership = sp.csr_matrix((np.ones(len(labels), dtype=np.float32), (labels, np.arange(len(labels)))), shape=(n_groups, len(labels)))
    return (membership @ counts).tocsr()


def class_tfidf(index: KeywordIndex, labels: np.ndarray, n_groups: int) -> sp.csr_matrix:
    """groups x terms scores: term frequency in the group times log(1 + average group size / term count)."""
    return class_tfidf_of_counts(group_term_counts(index.counts, labels, n_groups))


def class_tfidf_of_counts(group_counts: sp.csr_matrix) -> sp.csr_matrix:
    """class_tfidf from term counts already summed per group."""
    totals = np.asarray(group_counts.sum(axis=1)).ravel()
    term_totals = np.asarray(group_counts.sum(axis=0)).ravel()
    avg = totals.mean() if len(totals) else 0.0
    idf = np.log1p(avg / np.maximum(term_totals, 1e-9)).astype(np.float32)
    tf = sp.diags(1.0 / np.maximum(totals, 1e-9)) @ group_counts
    return (tf @ sp.diags(idf)).tocsr()


def top_terms(scores: sp.csr_matrix, terms: np.ndarray, group: int, n: int) -> list[str]:
    row = scores.getrow(group)
    order = row.indices[np.argsort(-row.data)]
    chosen: list[str] = []
    for idx in order:
        term = str(terms[idx])
        words = set(term.split())
        # skip a term whose words are all already shown (e.g. "card" after "lost card")
        if any(words <= set(c.split()) for c in chosen):
            continue
        chosen = [c for c in chosen if not set(c.split()) <= words]
        chosen.append(term)
        if len(chosen) == n:
            break
    return chosen


def keyword_name(terms: list[str]) -> tuple[str, str]:
    """A short name and a one-sentence description from distinctive terms."""
    if not terms:
        return "Miscellaneous requests", "No term was shared by enough accounts to describe this group."
    name = ", ".join(terms[:3])
    return name[:1].upper() + name[1:], f"Requests whose most distinctive terms are: {', '.join(terms)}."
