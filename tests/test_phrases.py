"""Extractive names from phrases (issue 14): adjacency, per-cluster k-anonymity, boilerplate, MMR,
multilingual stopwords, descriptions and taxonomy labels. Synthetic data and a bag-of-words encoder:
fast and deterministic; the real embedder is exercised by the pipeline tests."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from convoscope import policy
from convoscope.config import Config, PrivacySettings
from convoscope.errors import ConfigError
from convoscope.keywords import STOP_WORDS, build_keyword_index, phrase_analyzer, stopwords_for
from convoscope.phrases import _not_contained, mmr, name_clusters, number_in_words, share_in_words
from convoscope.taxonomy import load_taxonomy, make_labeller, match

TOPICS = {
    "cooking": ["how do I bake sourdough bread at home", "my sourdough starter smells sour, is the sourdough bread ruined",
                "what oven temperature for sourdough bread", "feed a sourdough starter twice a day?"],
    "python": ["plot a pandas dataframe with matplotlib", "group a pandas dataframe by two columns",
               "why is my pandas dataframe merge slow", "matplotlib plot of a pandas dataframe column"],
    "travel": ["cheap train tickets from Paris to Lyon", "book train tickets and a hotel room for two nights",
               "are train tickets cheaper a month ahead", "hotel room near the station with train tickets"],
}


def encode(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words embedding (hashed words), enough for MMR and centroids in tests."""
    out = np.zeros((len(texts), 256), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.sha256(word.encode()).hexdigest(), 16) % 256] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def corpus(seed: int = 0, boilerplate: bool = True):
    """30 conversations per topic from 10 accounts each (3 per account), plus a phrase used by 4 accounts
    of the cooking cluster and 2 of the python cluster (6 accounts: k-anonymous in the run, not in a cluster)."""
    rng = random.Random(seed)
    texts, accounts, labels = [], [], []
    for c, (topic, lines) in enumerate(TOPICS.items()):
        for a in range(10):
            for j in range(3):
                text = rng.choice(lines)
                if boilerplate:
                    text += "\nCopy code"  # a UI string pasted with the prompt
                if (c == 0 and a < 4 and j == 0) or (c == 1 and a < 2 and j == 0):
                    text += ". Zorblax widget"
                texts.append(text)
                accounts.append(f"{topic}-{a}")
                labels.append(c)
    labels_a = np.asarray(labels)
    vectors = encode(texts)
    centroids = np.vstack([vectors[labels_a == c].mean(axis=0) for c in range(3)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return texts, accounts, labels_a, centroids


def names_of(texts, accounts, labels, centroids, p=None, labeller=None, languages=None):
    p = p or PrivacySettings()
    index = build_keyword_index(texts, accounts, p.min_accounts, stop_words=stopwords_for(["English"]), phrases=True)
    _, account_index = np.unique(accounts, return_inverse=True)
    named = name_clusters(index, labels, int(labels.max()) + 1, account_index.reshape(-1), texts, languages or ["English"] * len(texts),
                          centroids, encode, p, labeller=labeller)
    named.terms = index.terms  # for the tests that look into the counts
    return named, account_index.reshape(-1)


def test_phrases_are_adjacent_words_broken_at_stopwords_digits_and_punctuation():
    analyze = phrase_analyzer(STOP_WORDS)
    assert analyze("How to bake a cake, quickly") == ["bake", "cake", "quickly"]
    got = analyze("pandas data-frame plotting in Python 3 code")
    assert "pandas data frame" in got and "data frame plotting" in got and "plotting python" not in got and "python code" not in got
    assert "fresh bread" in analyze("fresh bread\nsecond") and "bread second" not in analyze("fresh bread\nsecond")


def test_names_read_as_phrases_and_pass_the_published_text_checks():
    texts, accounts, labels, centroids = corpus()
    named, account_index = names_of(texts, accounts, labels, centroids)
    checker = policy.TextChecker(texts, account_index, PrivacySettings())
    for c, (name, description) in enumerate(named.names):
        assert ": " in name and name[0].isupper(), name
        assert description.startswith("Typical phrases: "), description
        assert checker.problems(f"{name}\n{description}", np.flatnonzero(labels == c)) == []
    assert "sourdough" in named.names[0][0].lower() and "pandas" in named.names[1][0].lower() and "train" in named.names[2][0].lower()


def test_a_phrase_needs_min_accounts_accounts_of_its_own_cluster():
    texts, accounts, labels, centroids = corpus()
    named, _ = names_of(texts, accounts, labels, centroids)
    # "zorblax widget": 6 accounts in the run (k-anonymous there), but only 4 in the cooking cluster
    assert not any("zorblax" in f"{n} {d}" for n, d in named.names)
    column = list(named.terms).index("zorblax widget")  # k-anonymous in the run: in the index
    assert named.counts[:, column].nnz == 0  # ... but in no cluster's counts (the hierarchy names parents from them)
    named4, _ = names_of(texts, accounts, labels, centroids, p=PrivacySettings(min_accounts=4))
    column = list(named4.terms).index("zorblax widget")
    assert named4.counts[0, column] > 0 and named4.counts[1, column] == 0, "at 4 accounts it qualifies in cooking only (the test can fail)"


def test_boilerplate_in_every_cluster_never_names_one():
    texts, accounts, labels, centroids = corpus()
    named, _ = names_of(texts, accounts, labels, centroids)
    assert named.boilerplate >= 1
    assert not any("copy" in f"{n} {d}".lower() for n, d in named.names)
    texts2, accounts2, labels2, centroids2 = corpus(boilerplate=False)
    assert names_of(texts2, accounts2, labels2, centroids2)[0].boilerplate == 0


def test_description_names_only_languages_that_pass_the_cell_rule():
    texts, accounts, labels, centroids = corpus()
    languages = ["English"] * len(texts)
    for i in np.flatnonzero(labels == 2)[:6]:  # travel: 2 accounts (6 conversations) in Spanish
        languages[i] = "Spanish"
    named, _ = names_of(texts, accounts, labels, centroids, languages=languages)
    # Spanish (2 accounts) fails the cell rule, and "other" would then hold 2 accounts, so 3 English accounts
    # join it (complementary suppression, as in the published breakdown): English is named, Spanish is not
    assert "Spanish" not in named.names[2][1] and "Language: English." in named.names[2][1]
    for i in np.flatnonzero(labels == 2)[:15]:  # 5 accounts in Spanish: a published cell
        languages[i] = "Spanish"
    named, _ = names_of(texts, accounts, labels, centroids, languages=languages)
    assert "Languages: English; Spanish." in named.names[2][1] or "Languages: Spanish; English." in named.names[2][1]


def test_stopwords_of_every_detected_language():
    swedish = stopwords_for(["Swedish"])
    assert {"och", "det", "är"} <= set(swedish) and "och" not in stopwords_for(["English"])
    assert phrase_analyzer(stopwords_for(["English", "Swedish"]))("det är en dag och vi ska baka bröd") == ["baka", "bröd", "baka bröd"]
    assert "och" in phrase_analyzer(stopwords_for(["English"]))("det är en dag och vi ska baka bröd")


def test_repeated_words_and_contained_phrases_are_shown_once():
    assert _not_contained(["story", "insult", "write story", "insults", "short story", "card", "lost card"]) == \
        ["write story", "insult", "short story", "lost card"]


def test_mmr_trades_relevance_for_novelty():
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1]], dtype=np.float32)
    relevance = np.array([1.0, 0.99, 0.5])
    assert mmr(relevance, vectors, 2, diversity=0.0) == [0, 1]
    assert mmr(relevance, vectors, 2, diversity=0.5) == [0, 2]


def test_shares_and_numbers_are_written_in_words():
    assert share_in_words(0.0398) == "about one conversation in twenty-five"
    assert share_in_words(0.0012) == "about one conversation in eight hundred"
    assert share_in_words(0.5) == "about half of the conversations"
    assert number_in_words(45) == "forty-five" and number_in_words(3000) == "three thousand"
    assert not policy.checked_tokens(share_in_words(0.00003))


def test_bundled_taxonomy_is_publishable():
    entries = load_taxonomy("default")
    assert 40 <= len(entries) <= 80
    assert all(not policy.checked_tokens(e.label) for e in entries)


@pytest.mark.parametrize("body, message", [
    ("", "no [[task]] entries"),
    ('[[task]]\nlabel = "Cooking"\n', "entry 1: field 'description'"),
    ('[[task]]\nlabel = "Cooking"\ndescription = "x"\n[[task]]\nlabel = "cooking"\ndescription = "y"\n', "entry 2: label 'cooking' appears twice"),
    ('[[task]]\nlabel = "Questions about Python"\ndescription = "x"\n', "'Python'"),
    ('[[task]]\nlabel = "Top 10 lists"\ndescription = "x"\n', "'10'"),
    ("[[task]\n", "not valid TOML"),
])
def test_a_bad_taxonomy_file_is_refused_with_the_entry_and_field(tmp_path, body, message):
    path = tmp_path / "tax.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_taxonomy(str(path))
    assert str(path) in str(err.value) and message in str(err.value)


def test_taxonomy_file_that_does_not_exist():
    with pytest.raises(ConfigError, match="cannot be read"):
        load_taxonomy("/nonexistent/taxonomy.toml")


def test_taxonomy_label_only_when_the_match_is_clear():
    entries = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    centroids = np.array([[0.9, 0.1, 0.42], [0.6, 0.58, 0.55], [0.1, 0.1, 0.99]], dtype=np.float32)
    assert match(centroids, entries, min_similarity=0.25, margin=0.05).tolist() == [0, -1, -1]


def test_taxonomy_label_heads_the_name_and_phrases_stay_as_detail():
    texts, accounts, labels, centroids = corpus()
    tax = [type("E", (), {"label": "Cooking and recipes", "description": "bake sourdough bread oven starter"})(),
           type("E", (), {"label": "Travel planning", "description": "train tickets hotel room"})()]
    labeller = make_labeller(tax, encode, min_similarity=0.25, margin=0.05)
    named, account_index = names_of(texts, accounts, labels, centroids, labeller=labeller)
    assert named.names[0][0].startswith("Cooking and recipes: ") and "sourdough" in named.names[0][0]
    assert named.names[2][0].startswith("Travel planning: ")
    assert not named.names[1][0].startswith(("Cooking", "Travel"))
    checker = policy.TextChecker(texts, account_index, PrivacySettings())
    assert all(checker.problems(f"{n}\n{d}", np.flatnonzero(labels == c)) == [] for c, (n, d) in enumerate(named.names))


def test_taxonomy_setting_is_off_by_default():
    assert Config().naming.taxonomy is None


def test_names_needing_only_prompt_words_skip_the_checker_and_come_out_the_same(monkeypatch):
    from convoscope import phrases

    texts, accounts, labels, centroids = corpus()
    languages = ["English"] * len(texts)
    for i in np.flatnonzero(labels == 2)[:15]:  # "Languages: English; Spanish." (both flagged: listed surnames)
        languages[i] = "Spanish"
    with monkeypatch.context() as m:
        m.setattr(phrases, "_only_prompt_words", lambda text, words: False)  # every flagged text through the checker
        checked, _ = names_of(texts, accounts, labels, centroids, languages=languages)
    built = []
    real_checker = policy.TextChecker
    monkeypatch.setattr(policy, "TextChecker", lambda *a, **k: built.append(1) or real_checker(*a, **k))
    fast, _ = names_of(texts, accounts, labels, centroids, languages=languages)
    assert fast.names == checked.names and fast.fallbacks == checked.fallbacks
    assert any("English" in d for _, d in fast.names) and not built  # the checker's index was never built
    words = {policy._norm(w) for w in policy.prompt_vocabulary()}
    assert phrases._only_prompt_words("Cake: sourdough\nLanguage: English.", words)
    assert not phrases._only_prompt_words("Cake: sourdough from Zorblax\nLanguage: English.", words)  # a word users wrote
    assert not phrases._only_prompt_words("Letters to Margaret Thatcher", words)  # a person-like span
