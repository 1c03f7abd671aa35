"""`Result.assign` on a run made with an injected embedder: the same embedder is taken (passed, or remembered by
the Result of that fit); none, or another one, is refused before anything is read or embedded."""

from __future__ import annotations

import pytest

pytest.importorskip("pandas")

from convoscope import Pipeline, load_run  # noqa: E402
from convoscope.errors import ConfigError  # noqa: E402
from fakes.corpus import make_records  # noqa: E402
from test_api import SMALL, HashEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from sklearn.decomposition import PCA

    embedder = HashEmbedder("api-assign-bow")
    out = tmp_path_factory.mktemp("api-assign") / "run"
    result = Pipeline(embedder=embedder, reducer=PCA(n_components=2, random_state=0), cache=False, **SMALL).fit(
        make_records(per_topic=30, accounts=20), out=out)
    return result, out


@pytest.fixture(scope="module")
def new_records():
    return [{**r, "id": f"new-{r['id']}"} for r in make_records(per_topic=12, accounts=20, seed=1)]


def test_without_the_embedder_it_is_refused_before_anything_is_read(fitted, new_records, tmp_path):
    _, out = fitted
    with pytest.raises(ConfigError, match=r"injected embedder named 'api-assign-bow'.*embedder=") as err:
        load_run(out).assign(new_records, tmp_path / "new")
    assert "cannot be compared" not in str(err.value)  # not the check after embedding
    assert not (tmp_path / "new").exists()


def test_another_embedder_is_refused_before_it_embeds_anything(fitted, new_records, tmp_path):
    _, out = fitted
    other = HashEmbedder("another-bow")
    with pytest.raises(ConfigError, match=r"'api-assign-bow'.*'another-bow'"):
        load_run(out).assign(new_records, tmp_path / "new", embedder=other)
    assert other.calls == 0 and not (tmp_path / "new").exists()


def test_the_same_embedder_places_the_new_data(fitted, new_records, tmp_path):
    result, out = fitted
    embedder = HashEmbedder("api-assign-bow")
    new = load_run(out).assign(new_records, tmp_path / "new", embedder=embedder)
    assert embedder.calls > 0
    assert new.store.stage_record("embed")["model"] == "api-assign-bow"
    assert new.store.manifest["assigned_from"]["run"] == str(out.resolve())
    assert sum(new.clusters.loc[new.clusters["level"] == 0, "size"]) > 0
    rows = load_run(out).compare(new)["clusters"]
    assert rows and all(r["status"] != "disappeared" for r in rows)
    # the Result of the fit remembers its embedder: no need to pass it again
    again = result.assign(new_records, tmp_path / "again")
    assert set(again.clusters["id"]) == set(new.clusters["id"])
