"""The published-text checker indexes only the words it is asked about (policy.VocabularySupport): every
answer must equal that of the index of every word of every text it replaced, on planted tricky cases
(possessives, plurals, curly apostrophes, Greek final sigma, dotted capital I, digits, underscores,
empty texts) and on random texts."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from convoscope import policy
from convoscope.config import PrivacySettings


class FullIndex:
    """The index every word of every text, as policy.VocabularySupport built it before (the reference)."""

    def __init__(self, texts, account_index, common_accounts, allowed_words=()):
        postings = defaultdict(list)
        for row, text in enumerate(texts):
            for w in {policy._norm(t) for t in policy._TOKEN.findall(text or "")}:
                postings[w].append(row)
        self.postings = {w: np.asarray(rows, dtype=np.int64) for w, rows in postings.items()}
        self.accounts = np.asarray(account_index)
        self.common = {w for w, rows in self.postings.items() if len(np.unique(self.accounts[rows])) >= common_accounts}
        self.allowed = {policy._norm(w) for w in allowed_words}

    def problems(self, text, members, min_accounts):
        """TextChecker.problems over this index."""
        from convoscope.person_names import find_person_names

        bad = self.unsupported(text, members, min_accounts) + [s for s in find_person_names(text) if not self.is_common(s)]
        return list(dict.fromkeys(bad))

    def is_common(self, text):
        return all(policy._norm(w) in self.common or policy._norm(w) in self.allowed for w in policy.checked_tokens(text))

    def unsupported(self, text, members, min_accounts):
        bad = []
        mask = np.zeros(len(self.accounts), dtype=bool)
        mask[members] = True
        for word in dict.fromkeys(policy.checked_tokens(text)):
            w = policy._norm(word)
            if w in self.allowed:
                continue
            rows = self.postings.get(w)
            if rows is not None and len(np.unique(self.accounts[rows[mask[rows]]])) >= min_accounts:
                continue
            bad.append(word)
        return bad


PLANTED = [
    "my landlord Smith's flat", "the Smiths came", "SMITH", "smiths' dog", "O’Neil’s shop", "o'neil", "Jones’s", "jones",
    "ΟΔΟΣ.Σ", "οδος", "Η ΟΔΟΣ ΚΑΙ", "οδοσ", "İstanbul trip", "istanbul", "foo_Bar and Bar_baz", "Class glasses bus buses",
    "form 1099 and 1099s", "", None, "the Smiths's car", "SMITH'S", "bus's route", "glasses's case", "A's", "a's's", "Zorblax-widget", "x’s", "Πάρις", "PARIS'S",
]
QUERIES = ["Smith", "Smiths", "Smith's", "O'Neil", "O’Neil", "Jones", "ΟΔΟΣ", "Οδος", "Σ", "İstanbul", "Istanbul", "Bar", "Foo",
           "Glasses", "Bus", "Buses", "1099", "1099s", "A's", "Zorblax", "X", "Πάρις", "Paris", "Nobody", "Class"]


def planted_case(seed=0):
    rng = random.Random(seed)
    texts = [t for t in PLANTED for _ in range(3)]
    accounts = np.array([rng.randrange(6) for _ in texts])
    return texts, accounts


@pytest.mark.parametrize("full_after", [4, 0])  # lazy passes, and the full index at the first pass
def test_planted_words_get_the_answers_of_the_full_index(full_after):
    texts, accounts = planted_case()
    reference = FullIndex(texts, accounts, common_accounts=3, allowed_words=["Class"])
    lazy = policy.VocabularySupport(texts, accounts, common_accounts=3, allowed_words=["Class"])
    lazy.FULL_INDEX_AFTER = full_after
    members = np.arange(0, len(texts), 2)
    for q in QUERIES:
        for text in (f"Letters to {q}", f"About {q} and {q}s", f"{q}"):
            assert lazy.unsupported(text, members, 2) == reference.unsupported(text, members, 2), text
            assert lazy.unsupported(text, np.arange(len(texts)), 1) == reference.unsupported(text, np.arange(len(texts)), 1), text
            assert lazy.is_common(text) == reference.is_common(text), text
    for w in reference.postings:  # every word that was looked up holds the rows of the full index
        if w in lazy._indexed or lazy._everything:
            assert np.array_equal(lazy._postings[w], reference.postings[w]), w


def test_every_ascii_token_is_among_the_lowercase_forms_of_its_word():
    rng = random.Random(1)
    for _ in range(20000):
        token = "".join(rng.choice("aBsS'x") for _ in range(rng.randrange(1, 8)))
        if policy._TOKEN.fullmatch(token):
            assert token.lower() in policy._lowercase_forms(policy._norm(token)), token


def test_planted_words_are_found_despite_case_and_sigma():
    texts, accounts = planted_case()
    lazy = policy.VocabularySupport(texts, accounts, common_accounts=3)
    lazy.prepare(["ΟΔΟΣ", "İstanbul", "O’Neil", "Smith", "Bar"])
    assert lazy.passes == 1
    # final sigma: "ΟΔΟΣ.Σ" lowercases to "οδος.ς" inside the text and "οδοσ" ... alone; all are one word
    assert set(lazy._postings["οδος"].tolist()) >= {i for i, t in enumerate(texts) if t in ("οδος", "ΟΔΟΣ.Σ", "Η ΟΔΟΣ ΚΑΙ")}
    assert set(lazy._postings["o'neil"].tolist()) == {i for i, t in enumerate(texts) if t in ("O’Neil’s shop", "o'neil")}
    assert set(lazy._postings["bar"].tolist()) == {i for i, t in enumerate(texts) if t == "foo_Bar and Bar_baz"}


@pytest.mark.parametrize("seed", range(5))
def test_random_texts_get_the_answers_of_the_full_index(seed):
    rng = random.Random(seed)
    words = ["Smith", "smith's", "Σ", "ος", "ΟΣ", "İ", "Ann", "ann’s", "anns", "Bus", "bus", "x1", "42", "_", "'", "’", "Class",
             "Maria", "maria", "Quargmire", "it's", "Its", "ß", "SS"]
    seps = [" ", "", ".", "-", "\n", "_", "'", ". "]
    texts = ["".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randrange(0, 8))) for _ in range(300)]
    accounts = np.array([rng.randrange(40) for _ in texts])
    reference = FullIndex(texts, accounts, common_accounts=5)
    lazy = policy.VocabularySupport(texts, accounts, common_accounts=5)
    lazy.FULL_INDEX_AFTER = 10_000  # lazy passes only
    members = np.array(sorted(rng.sample(range(len(texts)), 150)))
    for _ in range(120):
        text = " ".join(rng.choice(words + texts[:30]) for _ in range(3))
        assert lazy.unsupported(text, members, 3) == reference.unsupported(text, members, 3), text
        assert lazy.is_common(text) == reference.is_common(text), text


def test_checker_with_prepare_answers_like_the_full_index_in_one_pass():
    texts = ["Users ask about Zebulon Quargmire's invoices"] * 6 + ["We met Maria Lopez at 1099 Main St"] * 2 + ["python help"] * 10
    accounts = np.arange(len(texts))
    p = PrivacySettings()
    checked = ["Invoices of Zebulon Quargmire\nFrom 6 accounts.", "Help for Maria Lopez", "Python help", "Form 1099 questions"]
    full = policy.TextChecker(texts, accounts, p)
    full.vocabulary.FULL_INDEX_AFTER = 0
    prepared = policy.TextChecker(texts, accounts, p)
    prepared.prepare(checked)
    members = np.arange(len(texts))
    for text in checked:
        assert prepared.problems(text, members) == full.problems(text, members)
    assert prepared.vocabulary.passes == 1  # everything checked above was prepared
    assert prepared.problems("Help for Maria Lopez", members) == ["Maria", "Lopez", "Maria Lopez"]


def test_unprepared_checks_fall_back_to_the_full_index_after_a_few_passes():
    texts = [f"Text about Word{i}" for i in range(20)]
    vocab = policy.VocabularySupport(texts, np.arange(20), common_accounts=50)
    for i in range(vocab.FULL_INDEX_AFTER + 3):
        vocab.unsupported(f"About Word{i}", np.arange(20), 1)
    assert vocab.passes == vocab.FULL_INDEX_AFTER + 1 and vocab._everything
    assert vocab.unsupported("About Word19 and Word99", np.arange(20), 1) == ["Word99"]


class FullSharedCallChecker:
    """analysis_text.SharedCallChecker as it was: every word of every summary counted up front (the reference)."""

    def __init__(self, texts, units, p):
        from convoscope.analysis_text import SharedCallChecker

        self.base = FullIndex(texts, units, p.public_figure_accounts, policy.prompt_vocabulary() | {policy.NAME_WITHHELD, "Other (withheld)"})
        self.need = p.min_accounts
        seen = {}
        for text, unit in zip(texts, units.tolist()):
            for word in set(SharedCallChecker._WORD.findall((text or "").lower())):
                found = seen.setdefault(word, set())
                if found is not None:
                    found.add(unit)
                    if len(found) >= self.need:
                        seen[word] = None
        self.rare = {w for w, found in seen.items() if found is not None}
        self.min_accounts = p.min_accounts

    def rare_words(self, text):
        from convoscope.analysis_text import SharedCallChecker

        return [w for w in SharedCallChecker._WORD.findall(text) if w.lower() in self.rare]


@pytest.mark.parametrize("full_after", [4, 0])
def test_shared_call_checker_counts_buckets_like_the_full_count(full_after):
    from convoscope.analysis_text import SharedCallChecker

    rng = random.Random(3)
    words = ["zorblax", "Zorblax", "bicycle", "repair", "Quargmire", "ΟΔΟΣ", "it's", "co-op", "İstanbul", "x-ray", "Maria", "tips"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randrange(0, 6))) for _ in range(200)] + [None, ""]
    texts += ["ZEBULON visited", "met Zebulon's bike", "zebulon again", "Ὀδυσσεύς ΣΟΦΟΣ"]  # rare: 3 buckets
    units = np.array([rng.randrange(12) for _ in texts[:-4]] + [20, 21, 22, 23])
    words += ["Zebulon", "zebulon's", "Ὀδυσσεύς", "σοφος", "ΣΟΦΟΣ"]
    p = PrivacySettings()
    reference = FullSharedCallChecker(texts, units, p)
    lazy = SharedCallChecker(texts, units, p)
    lazy._full_after = full_after
    members = np.arange(len(texts))
    for _ in range(60):
        text = " ".join(rng.choice(words + ["Tips", "new", "Bicycles"]) for _ in range(4))
        expected = list(dict.fromkeys(reference.base.problems(text, members, p.min_accounts) + reference.rare_words(text)))
        assert lazy.problems(text, members) == expected, text


def test_shared_call_checker_prepares_in_one_pass():
    from convoscope.analysis_text import SharedCallChecker

    texts = ["zorblax repair"] * 3 + ["bicycle repair"] * 10
    units = np.arange(len(texts))
    checker = SharedCallChecker(texts, units, PrivacySettings())
    checker.prepare(["Zorblax repair tips", "Bicycle repair"])
    assert checker.passes == 1 and checker.base.vocabulary.passes <= 1
    assert checker.problems("Zorblax repair tips", units) == ["Zorblax"]  # 3 buckets < 5
    assert checker.problems("Bicycle repair", units) == [] and checker.passes == 1
