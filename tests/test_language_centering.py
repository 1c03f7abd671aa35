"""Language-mean centring (convoscope.language_centering): topics, not languages, after centring."""

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from convoscope import language_centering
from convoscope.kmeans import kmeans
from convoscope.language_centering import centre_rows, language_offsets, offsets_from_json, offsets_to_json


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


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="3 languages for 2 vectors"):
        language_offsets(np.zeros((2, 4), dtype=np.float32), ["a", "b", "c"], min_rows=1)
