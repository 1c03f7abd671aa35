"""Topics across languages: move each language's embeddings onto a common centre before clustering.

A multilingual sentence encoder puts a sentence and its translation close together, but it also shifts
every sentence of a language by a common offset, so k-means on the raw vectors partly sorts by language
(on SIB-200, 16 languages x the same 1,004 sentences, seven raw top-level clusters follow the language
almost as much as the topic). Subtracting each language's mean vector (Libovický et al., 2020, "On the
Language Neutrality of Pre-trained Multilingual Representations") removes that offset. We add back the
mean of all the centred languages' rows, so the vectors keep their place in the embedding space, and a
run with one language is left exactly as it was (its language mean is that mean: every offset is zero).

Only languages with at least `min_rows` rows are moved: a small language's mean is mostly its own
topics, and removing it would remove topic. "Unknown"/"undetermined" rows are not a language and stay.
The offsets are computed block by block over a (memory-mapped) array, so a million rows cost one pass.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NOT_A_LANGUAGE = frozenset({"", "Unknown", "unknown", "undetermined", "Undetermined", "und"})
BLOCK_ROWS = 65_536


def _language_means(vectors: np.ndarray, languages: Sequence[str | None], min_rows: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The languages with at least `min_rows` rows, their float64 mean vectors and row counts (none when
    fewer than two languages qualify)."""
    labels = np.asarray([str(x) if x is not None else "" for x in languages], dtype=object)
    if len(labels) != len(vectors):
        raise ValueError(f"{len(labels)} languages for {len(vectors)} vectors")
    names, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    kept = [i for i, name in enumerate(names) if counts[i] >= min_rows and name not in NOT_A_LANGUAGE]
    if len(kept) < 2:
        return [], np.zeros((0, vectors.shape[1])), np.zeros(0, dtype=np.int64)
    sums = np.zeros((len(names), vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(vectors), BLOCK_ROWS):
        block = np.asarray(vectors[start:start + BLOCK_ROWS], dtype=np.float64)
        np.add.at(sums, codes[start:start + BLOCK_ROWS], block)
    return [str(names[i]) for i in kept], sums[kept] / counts[kept, None], counts[kept]


def language_offsets(vectors: np.ndarray, languages: Sequence[str | None], min_rows: int) -> dict[str, np.ndarray]:
    """Per language with at least `min_rows` rows: the float32 vector to add to its rows (the mean of all
    such rows minus the language's own mean). Empty when fewer than two languages qualify: nothing moves."""
    kept, means, counts = _language_means(vectors, languages, min_rows)
    if not kept:
        return {}
    centre = (means * counts[:, None]).sum(axis=0) / counts.sum()
    return {name: (centre - mean).astype(np.float32) for name, mean in zip(kept, means)}


def language_subspace(vectors: np.ndarray, languages: Sequence[str | None], min_rows: int, rank_tolerance: float = 1e-6) -> np.ndarray:
    """An orthonormal basis (rows, float32) of the span of the differences between the means of the languages
    with at least `min_rows` rows: the directions along which languages differ on average. Projecting it out
    (`project_out`) removes every such language's offset, like centring, and also each row's spread along those
    directions (after Xie et al. 2022, "Discovering Low-rank Subspaces for Language-agnostic Multilingual
    Representations"). Empty (0 rows) when fewer than two languages qualify."""
    kept, means, counts = _language_means(vectors, languages, min_rows)
    if not kept:
        return np.zeros((0, vectors.shape[1]), dtype=np.float32)
    centre = (means * counts[:, None]).sum(axis=0) / counts.sum()
    _, singular, basis = np.linalg.svd(means - centre, full_matrices=False)
    return basis[singular > rank_tolerance * max(float(singular[0]), 1e-12)].astype(np.float32)


def project_out(rows: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """`rows` without their components along `basis` (orthonormal rows), renormalised, as float32."""
    out = np.array(rows, dtype=np.float32, copy=True)
    if len(basis) == 0:
        return out
    out -= (out @ basis.T) @ basis
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def centre_rows(rows: np.ndarray, languages: Sequence[str | None], offsets: dict[str, np.ndarray]) -> np.ndarray:
    """`rows` (float, unit length) moved by their language's offset and renormalised, as float32. Rows of a
    language without an offset are returned unchanged (up to the float32 conversion)."""
    out = np.array(rows, dtype=np.float32, copy=True)
    if not offsets:
        return out
    moved = np.zeros(len(out), dtype=bool)
    for i, language in enumerate(languages):
        offset = offsets.get(str(language)) if language is not None else None
        if offset is not None:
            out[i] += offset
            moved[i] = True
    if moved.any():
        norms = np.linalg.norm(out[moved], axis=1, keepdims=True)
        out[moved] /= np.maximum(norms, 1e-12)
    return out


def offsets_to_json(offsets: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {language: [float(x) for x in offset] for language, offset in sorted(offsets.items())}


def offsets_from_json(data: dict[str, list[float]] | None) -> dict[str, np.ndarray]:
    return {language: np.asarray(values, dtype=np.float32) for language, values in (data or {}).items()}
