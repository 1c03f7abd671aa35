"""Injectable components (the way BERTopic takes them): an embedder, a clusterer and a reducer, each
optional; whatever is not given is ours (see `embedders.py`, `kmeans.py`, `stages/project.py`).

- embedder: any object with `name: str` and `encode(list[str]) -> array (n, dim)`. The name identifies
  the model: it keys the vector cache and the embed stage's fingerprint, so give a different model a
  different name. Vectors are L2-normalised here, whatever the model returns.
- clusterer: any object with `fit_predict(vectors) -> labels` (sklearn KMeans, AgglomerativeClustering,
  HDBSCAN ...). Labels are renumbered 0..k-1 in the order of their values;
  centroids are the L2-normalised means of each cluster's members. Noise (label -1, as HDBSCAN gives)
  joins the cluster with the nearest centroid: every conversation needs a base cluster for the
  hierarchy and the privacy gates to count it.
- reducer: any object with `fit_transform(vectors) -> (n, 2)` (umap.UMAP, sklearn PCA or TSNE ...):
  the 2-D map of the explorer.
- namer: any object with `name_clusters(samples: list[list[str]]) -> list[(name, description)]`: one
  sample of member texts per base cluster (the clustered text: summaries in LLM mode, the user's own
  scrubbed words in extractive mode; at most `privacy.max_conversations_per_account` per account). Its
  names are checked like an LLM's (every capitalised word and number used by `min_accounts` accounts of
  the cluster, no person-like names; then the auditor in LLM mode): a name that fails is withheld.

A component's identity goes into its stage's fingerprint (the embedder's `name`; for the others the
class and `get_params()` when it has them, else its `repr`), so a changed component recomputes its stage
and everything after it on a rerun into the same run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from convoscope.context import RunContext


@dataclass(frozen=True)
class Components:
    embedder: Any = None
    clusterer: Any = None
    reducer: Any = None
    namer: Any = None

    def __post_init__(self) -> None:
        if self.embedder is not None:
            name = getattr(self.embedder, "name", None)
            if not callable(getattr(self.embedder, "encode", None)) or not isinstance(name, str) or not name.strip():
                raise TypeError(
                    f"embedder {type(self.embedder).__name__}: needs a `name` (a non-empty str identifying the model: it keys the "
                    "vector cache and the stage fingerprint) and an `encode(list[str]) -> array (n, dim)` method")
        if self.clusterer is not None and not callable(getattr(self.clusterer, "fit_predict", None)):
            raise TypeError(f"clusterer {type(self.clusterer).__name__}: needs a `fit_predict(vectors) -> labels` method (e.g. sklearn KMeans)")
        if self.namer is not None and not callable(getattr(self.namer, "name_clusters", None)):
            raise TypeError(f"namer {type(self.namer).__name__}: needs a `name_clusters(samples: list[list[str]]) -> list[(name, description)]` method")
        if self.reducer is not None and not callable(getattr(self.reducer, "fit_transform", None)):
            raise TypeError(f"reducer {type(self.reducer).__name__}: needs a `fit_transform(vectors) -> (n, 2)` method (e.g. umap.UMAP, sklearn PCA)")

    def describe(self) -> dict[str, str]:
        """Each injected component's identity, for the manifest."""
        out = {}
        if self.embedder is not None:
            out["embedder"] = self.embedder.name
        for role in ("clusterer", "reducer", "namer"):
            if getattr(self, role) is not None:
                out[role] = identity(getattr(self, role))
        return out


def identity(component: Any) -> str:
    """What a stage fingerprints for a component: the class, and its parameters when it declares them."""
    cls = f"{type(component).__module__}.{type(component).__qualname__}"
    get_params = getattr(component, "get_params", None)
    if callable(get_params):
        try:
            return f"{cls}{sorted((k, repr(v)) for k, v in get_params(deep=False).items())}"
        except Exception:  # noqa: BLE001 - a non-sklearn get_params: fall back to the repr
            pass
    return f"{cls}:{component!r}"


def _of(ctx: "RunContext") -> Components:
    return getattr(ctx, "components", None) or Components()


def components_of(ctx: "RunContext") -> Components:
    """The run's injected components (all None: our defaults)."""
    return _of(ctx)


def fingerprint_parts(ctx: "RunContext", role: str) -> tuple[str, ...]:
    """Nothing for our default (fingerprints of runs without components are unchanged), else the identity."""
    component = getattr(_of(ctx), role)
    if component is None:
        return ()
    return (f"custom {role}", component.name if role == "embedder" else identity(component))


def embedding_model(ctx: "RunContext") -> str:
    """The embed stage's model identity: the configured spec, or the injected embedder's name."""
    embedder = _of(ctx).embedder
    return ctx.config.embedding.model if embedder is None else f"custom:{embedder.name}"


class CheckedEmbedder:
    """An injected embedder, with its output checked and L2-normalised."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = inner.name

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self._inner.encode(list(texts)), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"embedder {self.name!r}: encode() of {len(texts)} texts returned shape {vectors.shape}; expected ({len(texts)}, dim)")
        if not np.isfinite(vectors).all():
            raise ValueError(f"embedder {self.name!r}: encode() returned NaN or infinite values")
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def embedder_for(ctx: "RunContext") -> Any:
    """The injected embedder (checked), else the configured model."""
    embedder = _of(ctx).embedder
    if embedder is not None:
        return CheckedEmbedder(embedder)
    from convoscope.embedders import make_embedder

    return make_embedder(ctx.config.embedding.model)


def custom_clusterer(ctx: "RunContext") -> Any:
    return _of(ctx).clusterer


def custom_reducer(ctx: "RunContext") -> Any:
    return _of(ctx).reducer


def cluster_with(clusterer: Any, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels 0..k-1 (int64), L2-normalised centroids (float32) and how many noise points (label < 0)
    were given the cluster of their nearest centroid."""
    labels = np.asarray(clusterer.fit_predict(vectors))
    if labels.ndim != 1 or len(labels) != len(vectors):
        raise ValueError(f"clusterer {type(clusterer).__name__}: fit_predict() returned shape {labels.shape}; expected ({len(vectors)},)")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"clusterer {type(clusterer).__name__}: fit_predict() returned non-integer labels")
        labels = labels.astype(np.int64)
    noise = labels < 0
    if noise.all():
        raise ValueError(f"clusterer {type(clusterer).__name__}: every point was labelled noise (-1); "
                         "loosen its settings (e.g. a smaller min_cluster_size) so that it finds clusters")
    used, dense = np.unique(labels[~noise], return_inverse=True)
    k = len(used)
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, dense.reshape(-1), vectors[~noise])
    centroids = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    out = np.empty(len(vectors), dtype=np.int64)
    out[~noise] = dense.reshape(-1)
    if noise.any():
        out[noise] = np.argmax(vectors[noise] @ centroids.T, axis=1)
    return out, centroids, int(noise.sum())


def reduce_with(reducer: Any, vectors: np.ndarray) -> np.ndarray:
    """(n, 2) float32 coordinates from an injected reducer."""
    if len(vectors) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    coords = np.asarray(reducer.fit_transform(vectors), dtype=np.float32)
    if coords.shape != (len(vectors), 2):
        raise ValueError(f"reducer {type(reducer).__name__}: fit_transform() returned shape {coords.shape}; expected ({len(vectors)}, 2)")
    if not np.isfinite(coords).all():
        raise ValueError(f"reducer {type(reducer).__name__}: fit_transform() returned NaN or infinite values")
    return coords
