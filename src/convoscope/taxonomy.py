"""Optional taxonomy labels for extractive names: a cluster whose centroid is clearly closest to one entry
of a taxonomy (`naming.taxonomy`: "default" for the bundled `data/taxonomy.toml`, CC0, or a TOML file of
your own) is named "Label: phrase and phrase", keeping its phrases as detail.

Clearly means: cosine of the centroid to the entry at least `naming.taxonomy_min_similarity`, and ahead
of the runner-up by `naming.taxonomy_margin`. Entries are embedded as "label: description" with the run's
embedder, in the space of the centroids. A label is public text (not data), but whether it applies is
data-derived, so a labelled name goes through the same published-cluster gates as any other name; labels
are checked at load to pass the published-text checks (no capitalised word after the first, no digits,
nothing like a person's name).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from convoscope.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from convoscope.config import Config

DEFAULT = "default"


@dataclass(frozen=True)
class TaxonomyEntry:
    label: str
    description: str


def _source(spec: str) -> tuple[str, str]:
    """(where, text) of the taxonomy named by `spec`."""
    if spec == DEFAULT:
        return "the bundled taxonomy (convoscope/data/taxonomy.toml)", resources.files("convoscope.data").joinpath("taxonomy.toml").read_text(encoding="utf-8")
    path = Path(spec).expanduser()
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"taxonomy file {path}: cannot be read ({exc.strerror or exc})") from None


def load_taxonomy(spec: str) -> list[TaxonomyEntry]:
    """Entries of a taxonomy file: [[task]] tables with a `label` and a `description`, each label unique and
    publishable. Any fault is a ConfigError naming the file, the entry and the field."""
    from convoscope import policy
    from convoscope.person_names import find_person_names

    where, text = _source(spec)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"taxonomy file {where}: not valid TOML ({exc})") from None
    tasks = data.get("task")
    if not isinstance(tasks, list) or not tasks:
        raise ConfigError(f"taxonomy file {where}: no [[task]] entries (each needs a label and a description)")
    entries: list[TaxonomyEntry] = []
    seen: set[str] = set()
    for n, task in enumerate(tasks, start=1):
        for field in ("label", "description"):
            value = task.get(field) if isinstance(task, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"taxonomy file {where}: [[task]] entry {n}: field '{field}' is missing or not a non-empty string")
        label, description = " ".join(task["label"].split()), " ".join(task["description"].split())
        if label.lower() in seen:
            raise ConfigError(f"taxonomy file {where}: [[task]] entry {n}: label {label!r} appears twice")
        seen.add(label.lower())
        checked = policy.checked_tokens(label) + find_person_names(label)
        if checked or len(label) > 60:
            why = f"the words {', '.join(map(repr, dict.fromkeys(checked)))} would need the support of the cluster's accounts" if checked else "longer than 60 characters"
            raise ConfigError(f"taxonomy file {where}: [[task]] entry {n}: label {label!r} cannot be published: {why} "
                              "(write labels with only the first word capitalised, without digits or names)")
        entries.append(TaxonomyEntry(label, description))
    return entries


def fingerprint(config: "Config") -> str | None:
    """What the naming stage fingerprints: the taxonomy's content and thresholds (None without one)."""
    n = config.naming
    if not n.taxonomy:
        return None
    _, text = _source(n.taxonomy)
    return f"{hashlib.sha256(text.encode()).hexdigest()[:16]}:{n.taxonomy_min_similarity}:{n.taxonomy_margin}"


def match(centroids: np.ndarray, entry_vectors: np.ndarray, min_similarity: float, margin: float) -> np.ndarray:
    """Per centroid: the index of the clearly closest entry, or -1."""
    if len(entry_vectors) == 0 or len(centroids) == 0:
        return np.full(len(centroids), -1, dtype=np.int64)
    sims = np.asarray(centroids, dtype=np.float32) @ np.asarray(entry_vectors, dtype=np.float32).T
    order = np.argsort(-sims, axis=1)
    best = sims[np.arange(len(sims)), order[:, 0]]
    second = sims[np.arange(len(sims)), order[:, 1]] if sims.shape[1] > 1 else np.full(len(sims), -np.inf)
    clear = (best >= min_similarity) & (best - second >= margin)
    return np.where(clear, order[:, 0], -1)


def make_labeller(entries: list[TaxonomyEntry], encode: Callable[[list[str]], np.ndarray], min_similarity: float,
                  margin: float) -> Callable[[np.ndarray], list[str | None]]:
    vectors = np.asarray(encode([f"{e.label}: {e.description}" for e in entries]), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def labeller(centroids: np.ndarray) -> list[str | None]:
        return [entries[i].label if i >= 0 else None for i in match(centroids, vectors, min_similarity, margin)]

    return labeller


def labeller_for(config: "Config", encode: Callable[[list[str]], np.ndarray]) -> Callable[[np.ndarray], list[str | None]] | None:
    """The run's taxonomy labeller (None without `naming.taxonomy`); `encode` is the run's embedder."""
    n = config.naming
    if not n.taxonomy:
        return None
    return make_labeller(load_taxonomy(n.taxonomy), encode, n.taxonomy_min_similarity, n.taxonomy_margin)
