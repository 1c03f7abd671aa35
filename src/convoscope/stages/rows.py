"""Per-row views shared by the later stages: the analysed conversations in facets-table order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from convoscope.store import RunStore


@dataclass
class Rows:
    conv_ids: list[str]
    accounts: np.ndarray  # salted account hashes, object array
    table: pa.Table  # conversations columns aligned with the facets rows


def analysed_rows(store: RunStore) -> Rows:
    conversations = store.read_table("conversations")
    facet_ids = store.read_table("facets", columns=["conv_id"]).column("conv_id")
    if len(facet_ids) != conversations.num_rows:
        mask = pc.is_in(conversations.column("conv_id"), value_set=facet_ids)
        conversations = conversations.filter(mask)
    return Rows(conv_ids=conversations.column("conv_id").to_pylist(),
                accounts=np.asarray(conversations.column("account").to_pylist(), dtype=object),
                table=conversations)


def distinct_per_group(labels: np.ndarray, accounts: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct accounts in each group."""
    _, account_index = np.unique(accounts, return_inverse=True)
    pairs = np.unique(np.stack([labels, account_index], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=n_groups)
