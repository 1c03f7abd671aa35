"""Extractive names: distinctive terms per group (class-based TF-IDF) over a k-anonymous vocabulary.

Only terms used by at least `min_accounts` distinct accounts in the whole input may appear in any
name or description, so a rare name, e-mail or number can never surface. Digits never form terms.
Person names (convoscope.person_names) are left out too unless at least `public_figure_accounts`
accounts use them: a campaign of a few accounts cannot publish a private person's name.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from convoscope.person_names import is_name_shaped_term, is_non_person_word, is_person_name_term, name_table

# Words that describe every request and so never tell clusters apart.
_EXTRA_STOP = {"please", "help", "need", "want", "like", "know", "tell", "thanks", "thank", "hi", "hello", "hey",
               "just", "ok", "okay", "yes", "don", "does", "did", "doesn", "didn", "ve", "ll", "re", "im", "ur", "u",
               "email", "url", "phone", "card", "ip", "ssn", "iban", "postcode", "address", "id"}  # our masking tokens
STOP_WORDS = sorted(ENGLISH_STOP_WORDS | _EXTRA_STOP)
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
_TOKEN = re.compile(TOKEN_PATTERN)


@dataclass
class KeywordIndex:
    """Term counts per document, restricted to the k-anonymous vocabulary."""

    counts: sp.csr_matrix  # documents x allowed terms
    terms: np.ndarray  # allowed terms
    vocabulary_size: int  # terms in at least min_accounts texts, before the k-anonymity filter (accounts)
    allowed_terms: int
    person_name_terms_excluded: int = 0  # k-anonymous terms left out as person names


PUBLIC_FIGURE_ACCOUNTS = 50
_ALWAYS_CAPITALISED = 0.9  # an unknown word this often capitalised after a given name is taken as a surname


def stopwords_for(languages: Iterable[str]) -> list[str]:
    """Stopwords of every listed language (full English names, as the language facet writes them).

    English: scikit-learn's list (the Glasgow list) and ours; stopwords-iso's English list also drops topic
    words ("computer", "information", "problem", "microsoft"). Every other language: stopwords-iso
    (`stopwordsiso`, 58 languages keyed by the ISO 639-1 codes fastText uses; `stop-words` has 33).
    """
    import stopwordsiso

    from convoscope.languages import NAMES

    codes: dict[str, list[str]] = {}
    for code, name in NAMES.items():
        codes.setdefault(name, []).append(code)
    words = set(STOP_WORDS)
    for language in set(languages):
        for code in codes.get(language, []):
            if code != "en" and stopwordsiso.has_lang(code):
                # split as texts are ("qu'il" -> "qu", "il"), so every stopword matches a token
                words |= {t for w in stopwordsiso.stopwords(code) for t in _TOKEN.findall(w.lower())}
    return sorted(words)


_PHRASE_GAP = re.compile(r"[ \t'’-]*")  # what may separate the words of one phrase (a line break ends it)


def phrase_analyzer(stop_words: Iterable[str], max_words: int = 3):
    """Phrases of 1 to `max_words` words that stand next to each other in the text: a stopword, a digit,
    punctuation or a line break ends a phrase, so "how to bake a cake, quickly" gives "bake", "cake", "quickly" and never
    "bake cake" (which reads as no one wrote it)."""
    stop = frozenset(stop_words)

    def analyze(text: str) -> list[str]:
        out: list[str] = []
        run: list[str] = []
        end = 0
        for m in _TOKEN.finditer(text.lower()):
            word = m.group(0)
            if run and not _PHRASE_GAP.fullmatch(text, end, m.start()):
                run = []
            end = m.end()
            if word in stop:
                run = []
                continue
            run.append(word)
            for n in range(1, min(max_words, len(run)) + 1):
                out.append(" ".join(run[-n:]))
        return out

    return analyze


def build_keyword_index(texts: list[str], accounts: Sequence | np.ndarray, min_accounts: int, *,
                        public_figure_accounts: int = PUBLIC_FIGURE_ACCOUNTS, stop_words: list[str] | None = None,
                        phrases: bool = False) -> KeywordIndex:
    """Terms of each text. Default (the hierarchy's parents and the privacy tests): 1-2 word terms over the
    English stopwords (STOP_WORDS) with stopwords skipped. `phrases=True`: phrases of up to three adjacent
    words (phrase_analyzer) over `stop_words`. Terms in fewer than `min_accounts` texts are never counted
    (they cannot reach `min_accounts` accounts), which bounds the vocabulary."""
    stop = STOP_WORDS if stop_words is None else stop_words
    min_df = max(1, min(min_accounts, len(texts)))
    if phrases:
        vectorizer = CountVectorizer(analyzer=phrase_analyzer(stop), dtype=np.float32, min_df=min_df)
    else:
        vectorizer = CountVectorizer(stop_words=stop, token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), lowercase=True, dtype=np.float32,
                                     min_df=min_df)
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
    names = person_name_columns(texts, counts, terms, allowed[support[allowed] < public_figure_accounts])
    allowed = np.setdiff1d(allowed, names)
    return KeywordIndex(counts[:, allowed].tocsr(), terms[allowed], len(terms), len(allowed), len(names))


def person_name_columns(texts: list[str], counts: sp.csr_matrix, terms: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The columns (among `columns`) whose term is a person's name, judged with its capitalisation in `texts`.

    Only terms made of listed names are candidates, and only the texts containing one are read again,
    so this costs little next to the vectorizer.
    """
    candidates = [c for c in columns if is_name_shaped_term(str(terms[c]))]
    if not candidates:
        return np.array([], dtype=np.int64)
    words = sorted({w for c in candidates for w in str(terms[c]).split()})
    share = capitalised_shares(texts, counts, terms, words)
    names = [c for c in candidates if is_person_name_term(str(terms[c]), ngram_share(str(terms[c]), share))]
    names += surnames_after_given_names(terms, columns, names, texts, counts)
    return np.asarray(sorted(set(names) | set(ngrams_containing(terms, columns, names))), dtype=np.int64)


def ngrams_containing(terms: np.ndarray, columns: np.ndarray, names: list[int]) -> list[int]:
    """Columns whose term contains an excluded name word ("landlord zebulon", "smith agrees")."""
    name_words = {str(terms[c]) for c in names if " " not in str(terms[c])}
    return [c for c in columns if " " in str(terms[c]) and not name_words.isdisjoint(str(terms[c]).split())]


def ngram_share(term: str, share: dict[str, float]) -> float:
    """An n-gram counts as capitalised as often as its least capitalised word (an approximation)."""
    return min(share.get(w, 0.0) for w in term.split())


def surnames_after_given_names(terms: np.ndarray, columns: np.ndarray, names: list[int], texts: list[str],
                               counts: sp.csr_matrix) -> list[int]:
    """Unlisted words that follow a given name in an excluded n-gram ("zebulon quargmire" -> "quargmire")
    and are (nearly) always capitalised: a surname no list has. Brands rarely follow a given name."""
    table = name_table()
    unknown = {w for c in names for w in str(terms[c]).split()[1:] if w not in table and not is_non_person_word(w)}
    if not unknown:
        return []
    index = {str(terms[c]): c for c in columns}
    share = capitalised_shares(texts, counts, terms, [w for w in sorted(unknown) if w in index])
    return [index[w] for w in sorted(unknown) if w in index and share.get(w, 0.0) >= _ALWAYS_CAPITALISED]


# A word starting with a letter that is not a lowercase Latin, Greek or Cyrillic letter. (Python's re has no
# \p{Lu}; Latin Extended-A lowercase initials such as "ż" count as capitals, which matters only for names.)
_CAPITALISED_WORD = re.compile(r"\b[^\W\d_a-z\u00df-\u00f6\u00f8-\u00ff\u03ac-\u03ce\u0430-\u045f][^\W\d_]+")
_SENTENCE_INITIAL_WORD = re.compile(r"(?:^|[.!?:][\"'”’)\]]?\s|\n)\s*([^\W\d_]+)")


def capitalised_shares(texts: list[str], counts: sp.csr_matrix, terms: np.ndarray, words: list[str]) -> dict[str, float]:
    """For each lowercase word: the share of its occurrences not at a sentence start that are capitalised.

    Total occurrences come from the count matrix; the texts are scanned (by C-level findall, no per-token
    Python work except for capitalised words) only where one of `words` occurs.
    """
    columns = np.minimum(np.searchsorted(terms, words), len(terms) - 1)  # get_feature_names_out is sorted
    words = [w for w, c in zip(words, columns) if terms[c] == w]
    wanted = set(words)
    columns = [c for c in columns if terms[c] in wanted]
    sub = counts[:, columns]
    rows = np.unique(sub.nonzero()[0])
    total = dict(zip(words, np.asarray(sub[rows].sum(axis=0)).ravel().tolist()))
    capitalised: Counter[str] = Counter()
    initial: Counter[str] = Counter()
    for r in rows:
        text = texts[r]
        capitalised.update(w for w in map(str.lower, _CAPITALISED_WORD.findall(text)) if w in wanted)
        initial.update(w for w in map(str.lower, _SENTENCE_INITIAL_WORD.findall(text)) if w in wanted)
    shares = {}
    for w in words:
        mid_sentence = total[w] - initial[w]
        if mid_sentence > 0:
            shares[w] = min(1.0, max(0, capitalised[w] - initial[w]) / mid_sentence)
    return shares


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
    """A name ("Python: pandas dataframe and plotting") and a description from distinctive phrases, the
    most distinctive first. Phrases are lowercase k-anonymous n-grams, so only the name's first word is
    capitalised (it opens the sentence, which the published-text checks allow)."""
    if not terms:
        return "Miscellaneous requests", "No phrase was shared by enough accounts to describe this group."
    return phrase_name(terms[0], terms[1:3]), f"Typical phrases: {', '.join(terms)}."


def phrase_name(head: str, details: list[str]) -> str:
    """"Head: detail and detail" with the head capitalised."""
    name = head[:1].upper() + head[1:]
    if details:
        name += ": " + (" and ".join(details) if len(details) <= 2 else ", ".join(details[:-1]) + " and " + details[-1])
    return name
