"""Language-mean centring (convoscope.language_centering): topics, not languages, after centring."""

import zlib

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from convoscope import language_centering
from convoscope.kmeans import kmeans
from convoscope.language_centering import centre_rows, language_offsets, language_subspace, offsets_from_json, offsets_to_json, project_out


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def two_languages(rng, n=400, dim=32, language_shift=3.0):
    """Two topics in two languages; each language adds a large common offset (as multilingual encoders do)."""
    topics = rng.normal(size=(2, dim))
    shifts = {"English": rng.normal(size=dim) * language_shift, "German": rng.normal(size=dim) * language_shift}
    topic = rng.integers(0, 2, size=n)
    language = np.where(rng.random(n) < 0.5, "English", "German")
    vectors = unit(topics[topic] + np.stack([shifts[lang] for lang in language]) + rng.normal(scale=0.3, size=(n, dim)))
    return vectors.astype(np.float32), topic, language


def test_clusters_follow_topics_after_centring():
    rng = np.random.default_rng(0)
    vectors, topic, language = two_languages(rng)
    raw, _ = kmeans(vectors, 2, 0)
    assert normalized_mutual_info_score(language, raw) > 0.9  # raw vectors: the clusters are the languages
    centred = centre_rows(vectors, language, language_offsets(vectors, language, min_rows=50))
    labels, _ = kmeans(centred, 2, 0)
    assert normalized_mutual_info_score(topic, labels) > 0.9 and normalized_mutual_info_score(language, labels) < 0.05
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)


def test_one_language_run_is_left_exactly_as_it_was():
    rng = np.random.default_rng(1)
    vectors, _, _ = two_languages(rng)
    languages = ["English"] * (len(vectors) - 10) + ["German"] * 5 + ["Unknown"] * 5  # German below min_rows
    offsets = language_offsets(vectors, languages, min_rows=50)
    assert offsets == {}
    assert np.array_equal(centre_rows(vectors, languages, offsets), vectors)


def test_small_languages_and_unknown_stay_put():
    rng = np.random.default_rng(2)
    vectors, _, language = two_languages(rng)
    languages = list(language)
    languages[:20] = ["Finnish"] * 10 + ["Unknown"] * 10
    offsets = language_offsets(vectors, languages, min_rows=50)
    assert set(offsets) == {"English", "German"}
    centred = centre_rows(vectors, languages, offsets)
    assert np.allclose(centred[:20], vectors[:20])
    assert not np.allclose(centred[20:], vectors[20:])


def test_block_by_block_equals_in_memory(monkeypatch):
    rng = np.random.default_rng(3)
    vectors, _, language = two_languages(rng, n=1000)
    whole = language_offsets(vectors, language, min_rows=50)
    monkeypatch.setattr(language_centering, "BLOCK_ROWS", 64)
    blocks = language_offsets(vectors.astype(np.float16), language, min_rows=50)
    assert set(whole) == set(blocks) and all(np.allclose(whole[k], blocks[k], atol=2e-3) for k in whole)
    assert all(np.array_equal(v, offsets_from_json(offsets_to_json(whole))[k]) for k, v in whole.items())


def test_projecting_out_the_language_subspace_clusters_by_topic():
    rng = np.random.default_rng(4)
    vectors, topic, language = two_languages(rng)
    languages = list(language)
    languages[:10] = ["Unknown"] * 10
    basis = language_subspace(vectors, languages, min_rows=50)
    assert basis.shape == (1, vectors.shape[1])  # two languages: one direction between their means
    assert np.allclose(basis @ basis.T, np.eye(1), atol=1e-5)
    projected = project_out(vectors, basis)
    assert np.allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5) and np.allclose(projected @ basis.T, 0, atol=1e-5)
    labels, _ = kmeans(projected, 2, 0)
    assert normalized_mutual_info_score(topic, labels) > 0.9 and normalized_mutual_info_score(language, labels) < 0.05
    three = np.where(np.arange(len(languages)) % 3 == 0, "French", np.array(languages, dtype=object))
    assert language_subspace(vectors, list(three), min_rows=50).shape[0] == 2


def test_no_subspace_for_one_language():
    rng = np.random.default_rng(5)
    vectors, _, _ = two_languages(rng)
    basis = language_subspace(vectors, ["English"] * (len(vectors) - 5) + ["German"] * 5, min_rows=50)
    assert basis.shape == (0, vectors.shape[1]) and np.array_equal(project_out(vectors, basis), vectors)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="3 languages for 2 vectors"):
        language_offsets(np.zeros((2, 4), dtype=np.float32), ["a", "b", "c"], min_rows=1)


# -- end to end: a two-language run clusters by topic, and assign uses the run's offsets ---------------------

EN = {"cooking": ["How long should I roast a chicken in the oven for a family dinner tonight?",
                  "What is a good recipe for a vegetable soup that my children will enjoy eating?",
                  "Can you suggest a simple recipe for baking fresh bread at home this weekend?"],
      "tax": ["How do I file my income tax return when I changed jobs during the year?",
              "Which expenses can I deduct from my taxes when I work from home every day?",
              "When is the deadline for paying the property tax on my house this year?"]}
DE = {"cooking": ["Wie lange muss ich ein Huhn im Ofen braten, damit es heute Abend fertig ist?",
                  "Hast du ein gutes Rezept für eine Gemüsesuppe, die meine Kinder gerne essen?",
                  "Kannst du mir ein einfaches Rezept zum Backen von frischem Brot zu Hause geben?"],
      "tax": ["Wie mache ich meine Steuererklärung, wenn ich im Laufe des Jahres den Job gewechselt habe?",
              "Welche Ausgaben kann ich von der Steuer absetzen, wenn ich jeden Tag von zu Hause arbeite?",
              "Bis wann muss ich die Grundsteuer für mein Haus in diesem Jahr bezahlen?"]}
TOPIC_WORDS = {"cooking": ("roast", "recipe", "baking", "braten", "rezept", "backen"),
               "tax": ("tax", "taxes", "steuer", "steuererklärung", "grundsteuer")}


class TopicAndLanguageEmbedder:
    """Vectors = topic direction + a large per-language offset + noise: what a multilingual encoder does, exaggerated."""

    name = "topic-and-language-test"

    def __init__(self):
        rng = np.random.default_rng(0)
        self.topics = {t: rng.normal(size=64) for t in TOPIC_WORDS}
        self.languages = {"en": rng.normal(size=64) * 2.5, "de": rng.normal(size=64) * 2.5}

    def encode(self, texts):
        out = []
        for text in texts:
            words = text.lower()
            topic = next((t for t, ws in TOPIC_WORDS.items() if any(w in words for w in ws)), None)  # naming's phrases may have none
            language = "de" if any(w in words.split() for w in ("ich", "die", "der", "mein", "meine", "mir", "du")) else "en"
            noise = np.random.default_rng(zlib.crc32(text.encode())).normal(scale=0.4, size=64)
            out.append((self.topics[topic] if topic else 0.0) + self.languages[language] + noise)
        return np.asarray(out)


def _records(prefix, per_variant, accounts=12, seed=0):
    import random

    r = random.Random(seed)
    out = []
    for language, texts in (("en", EN), ("de", DE)):
        for topic, variants in texts.items():
            for variant in variants:
                for i in range(per_variant):
                    out.append({"id": f"{prefix}-{language}-{topic}-{len(out)}", "user": f"u{r.randrange(accounts)}",
                                "text": f"{variant} ({i})" if i else variant, "metadata": {"topic": topic, "lang": language}})
    r.shuffle(out)
    return out


@pytest.mark.parametrize("centre", [True, False])
def test_a_two_language_run_clusters_by_topic(tmp_path, centre):
    from convoscope import Pipeline

    records = _records("r", 8)
    result = Pipeline(embedder=TopicAndLanguageEmbedder(), min_accounts=3, min_conversations=5, min_clusters=2, max_clusters=2,
                      seed=0, progress=False, cache=False,
                      settings={"embedding.centre_languages_min": 20 if centre else 0}).fit(records, out=tmp_path / "run")
    store = result.store
    labels = store.read_table("base_assignments").column("cluster").to_pylist()
    conv_ids = store.read_table("base_assignments").column("conv_id").to_pylist()
    meta = {r["id"]: r["metadata"] for r in records}
    topic_nmi = normalized_mutual_info_score([meta[c]["topic"] for c in conv_ids], labels)
    language_nmi = normalized_mutual_info_score([meta[c]["lang"] for c in conv_ids], labels)
    if not centre:  # the control: without centring the two clusters are the two languages
        assert language_nmi > 0.9 and not store.has("json:language_offsets")
        return
    assert topic_nmi > 0.9 and language_nmi < 0.1, (topic_nmi, language_nmi)
    assert set(store.read_json("language_offsets")) == {"English", "German"}
    # assign embeds new data as it is and moves it by the RUN's offsets (not its own languages' means)
    from convoscope.assign import assign_config

    assert assign_config(store).embedding.centre_languages_min == 0
