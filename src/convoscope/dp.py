"""Differential privacy mode (`privacy.mode = "dp"`): the budget, its split and the mechanisms.

The unit of privacy is the **account**: two inputs are neighbours when one has one account more (with
all its conversations). Every released quantity is computed on the *bounded* input, in which each
account keeps at most `max_conversations_per_account` conversations (`bounded_mask`), so one account
changes any released vector by a known amount (its sensitivity).

Mechanisms and accounting come from OpenDP (https://opendp.org): its Gaussian mechanism on vectors
(zero-concentrated DP, secure noise sampling) and its Gaussian threshold mechanism for partition
selection over keys nobody knows in advance (terms, time buckets). zCDP composes by addition, so the
run's budget is one rho, split across the released quantities (`SHARES`); OpenDP converts the total
to (epsilon, delta) (`epsilon_of`). Each mechanism is built with the scale that spends its share and
checked against OpenDP's own privacy map before it runs (`Budget.gaussian`, `Budget.select_keys`):
a release that would spend more than its share raises instead.

OpenDP does not take a seed: its noise comes from the operating system's secure generator. Tests
therefore check statistical properties with failure probabilities far below one in a million.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from convoscope.config import PrivacySettings

# Shares of the run's rho (zCDP) per released quantity; the split is written in the release.
SHARES = {
    "centres": 0.30,  # DP k-means: noisy counts and sums per Lloyd round
    "cluster_counts": 0.15,  # conversations and accounts per cluster, accounts of the run
    "vocabulary": 0.30,  # terms per base cluster (partition selection), the words of every name
    "breakdowns": 0.15,  # facet cells per base cluster (language, turns, ...)
    "timeline": 0.10,  # time buckets per base cluster (partition selection)
}
# Shares of delta: the zCDP -> (epsilon, delta) conversion and the two partition selections.
DELTA_SHARES = {"conversion": 0.5, "vocabulary": 0.25, "timeline": 0.25}
TERMS_PER_CONVERSATION = 8  # distinct terms one conversation contributes to the vocabulary counts
UNIT = "account"


@lru_cache(maxsize=1)
def _opendp():
    import opendp.prelude as odp

    odp.enable_features("contrib")
    return odp


def library_version() -> str:
    from importlib import metadata

    return f"opendp {metadata.version('opendp')}"


def epsilon_of(rho: float, delta: float) -> float:
    """The epsilon of a rho-zCDP release at `delta`, by OpenDP's conversion."""
    odp = _opendp()
    probe = odp.m.make_gaussian(odp.atom_domain(T=float, nan=False), odp.absolute_distance(T=float), scale=1.0 / math.sqrt(2 * rho))
    approx = odp.c.make_fix_delta(odp.c.make_zCDP_to_approxDP(probe), delta)
    return float(approx.map(1.0)[0])


def rho_for(epsilon: float, delta: float) -> float:
    """The largest rho (to 1e-4 relative) whose OpenDP conversion at `delta` stays within `epsilon`."""
    lo, hi = 0.0, epsilon
    while epsilon_of(hi, delta) <= epsilon:  # (epsilon itself is always too much, but be safe)
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if mid > 0 and epsilon_of(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-4 * hi:
            break
    return lo


class BudgetExceeded(RuntimeError):
    """A mechanism would spend more than its share of the budget (a bug, never data-dependent)."""


@dataclass
class Budget:
    """The run's (epsilon, delta), its rho, and each quantity's share. `spent` records what each
    mechanism cost by OpenDP's privacy map, so the release can state it."""

    epsilon: float
    delta: float
    cap: int  # conversations per account
    rho: float  # this hierarchy's rho: the run's, divided among its hierarchies
    hierarchies: int = 1
    conversation_is_account: bool = False  # the input has no account ids
    spent: dict[str, float] = field(default_factory=dict)
    spent_delta: dict[str, float] = field(default_factory=dict)

    def rho_of(self, quantity: str) -> float:
        return self.rho * SHARES[quantity]

    def delta_of(self, quantity: str) -> float:
        return self.delta * DELTA_SHARES[quantity]

    def gaussian(self, quantity: str, values: np.ndarray, l2_sensitivity: float, rho: float | None = None) -> np.ndarray:
        """`values` (any shape) plus Gaussian noise spending `rho` (default: the quantity's share) for an
        input whose one account moves `values` by at most `l2_sensitivity` in L2 norm."""
        odp = _opendp()
        rho = self.rho_of(quantity) if rho is None else rho
        scale = gaussian_scale(l2_sensitivity, rho)
        flat = np.asarray(values, dtype=np.float64).ravel()
        meas = odp.m.make_gaussian(odp.vector_domain(odp.atom_domain(T=float, nan=False)), odp.l2_distance(T=float), scale=scale)
        cost = float(meas.map(float(l2_sensitivity)))
        self._charge(quantity, cost, 0.0, rho, 0.0)
        noisy = np.asarray(meas(flat.tolist()) if len(flat) else [], dtype=np.float64)
        return noisy.reshape(np.shape(values))

    def select_keys(self, quantity: str, counts: dict[str, int], l0: int, linf: int) -> tuple[dict[str, float], float, float]:
        """Partition selection: noisy counts of the keys whose noisy count passes OpenDP's threshold, for
        an input where one account touches at most `l0` keys, each by at most `linf`. Returns the kept
        keys, the noise scale and the threshold."""
        rho, delta = self.rho_of(quantity), self.delta_of(quantity)
        l2 = math.ceil(math.sqrt(l0) * linf)  # OpenDP takes an integer L2 bound here: rounded up
        scale = gaussian_scale(l2, rho)
        threshold = selection_threshold(scale, l0, linf, delta)
        meas = _threshold_measurement(scale, threshold)
        cost_rho, cost_delta = meas.map((l0, l2, linf))
        self._charge(quantity, float(cost_rho), float(cost_delta), rho, delta)
        kept = meas({str(k): int(v) for k, v in counts.items() if v > 0}) if counts else {}
        return {k: float(v) for k, v in kept.items()}, scale, float(threshold)

    def _charge(self, quantity: str, rho: float, delta: float, allowed_rho: float, allowed_delta: float) -> None:
        """Record a release's cost by OpenDP's map; refuse one above its allowance, or one that would take
        the quantity past its share (several releases share one: the rounds of DP k-means)."""
        total_rho = self.spent.get(quantity, 0.0) + rho
        total_delta = self.spent_delta.get(quantity, 0.0) + delta
        delta_share = self.delta_of(quantity) if quantity in DELTA_SHARES else 0.0
        if (rho > allowed_rho * (1 + 1e-6) or delta > allowed_delta * (1 + 1e-6) or total_rho > self.rho_of(quantity) * (1 + 1e-6)
                or total_delta > delta_share * (1 + 1e-6)):
            raise BudgetExceeded(f"{quantity}: a release would cost rho {rho:.3g}, delta {delta:.3g} (spent so far {self.spent.get(quantity, 0.0):.3g}); "
                                 f"its share is rho {self.rho_of(quantity):.3g}")
        self.spent[quantity] = self.spent.get(quantity, 0.0) + rho
        self.spent_delta[quantity] = self.spent_delta.get(quantity, 0.0) + delta

    def guarantee(self) -> dict[str, Any]:
        """The `privacy_guarantee` object of the release: what holds, per account, and how it is split."""
        return {
            "mode": "dp", "epsilon": self.epsilon, "delta": self.delta * self.hierarchies, "unit": UNIT,
            "max_conversations_per_account": self.cap,
            **({"note": "the input has no account ids: each conversation is its own account"} if self.conversation_is_account else {}),
            "accounting": f"zero-concentrated DP (rho {self.rho * self.hierarchies:.6g}) composed over every release, converted to (epsilon, delta) by {library_version()}",
            "hierarchies": self.hierarchies,  # each hierarchy (--hierarchies) releases with 1/hierarchies of the budget
            "split": {q: {"share": s, "rho": round(self.rho * s, 8)} for q, s in SHARES.items()},
            "delta_split": {q: self.delta * s for q, s in DELTA_SHARES.items()},
            "not_covered": NOT_COVERED,
        }


NOT_COVERED = [
    "the embedding model and the language detector (public models applied to each conversation on its own)",
    "per-conversation summaries and vectors in the run directory (never released; protect the directory)",
    "the number of conversations an account has beyond the bound: sizes count at most max_conversations_per_account per account",
    "repeated runs on the same data: each run spends its own budget, and budgets add up",
]


def gaussian_scale(l2_sensitivity: float, rho: float) -> float:
    """The Gaussian noise scale (standard deviation) for which a release of this sensitivity is rho-zCDP."""
    return float(l2_sensitivity) / math.sqrt(2 * rho)


def _threshold_measurement(scale: float, threshold: int):
    odp = _opendp()
    domain = odp.map_domain(odp.atom_domain(T=str), odp.atom_domain(T=int))
    return odp.m.make_gaussian_threshold(domain, odp.l02inf_distance(odp.absolute_distance(T=int)), scale=scale, threshold=int(threshold))


def selection_threshold(scale: float, l0: int, linf: int, delta: float) -> int:
    """The smallest threshold (a count) for which OpenDP's Gaussian threshold mechanism keeps delta."""
    l2 = math.ceil(math.sqrt(l0) * linf)
    lo, hi = int(linf), int(linf + scale * 50 + 10)

    def ok(t: int) -> bool:
        return float(_threshold_measurement(scale, t).map((l0, l2, linf))[1]) <= delta

    if not ok(hi):
        raise BudgetExceeded(f"no threshold reaches delta {delta:g} at noise scale {scale:.3g}")
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def plan(p: PrivacySettings, hierarchies: int = 1, *, conversation_is_account: bool = False) -> Budget:
    """One hierarchy's budget from the settings (the same for every stage: deterministic). A run with
    several hierarchies (`--hierarchies request,task`) releases each from the same accounts, so each
    gets 1/hierarchies of the rho and of every delta share. Input without account ids makes each
    conversation its own account: one conversation per account by construction (cap 1)."""
    n = max(1, int(hierarchies))
    return Budget(epsilon=p.epsilon, delta=p.delta / n, cap=1 if conversation_is_account else p.max_conversations_per_account,
                  rho=_rho_cached(p.epsilon, p.delta * DELTA_SHARES["conversion"]) / n, hierarchies=n,
                  conversation_is_account=conversation_is_account)


def budget_for(ctx) -> Budget:
    """The budget of the hierarchy a stage works on. Whether the input has account ids is its schema,
    which the release states anyway (`account_ids`), not something one account can change unnoticed:
    input mixing both is refused at ingest."""
    report = (ctx.store.stage_record("ingest") or {}).get("report") or {}
    return plan(ctx.config.privacy, len(ctx.config.facets.hierarchy_facets), conversation_is_account=report.get("account_ids") == "absent")


@lru_cache(maxsize=32)
def _rho_cached(epsilon: float, delta: float) -> float:
    return rho_for(epsilon, delta)


def is_dp(p: PrivacySettings) -> bool:
    return p.mode == "dp"


def bounded_mask(conv_ids: list[str], account_index: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """Contribution bounding: for each account, its `cap` conversations with the smallest keyed hash of
    their id. Which ones an account keeps depends on its own conversations only, so adding or removing
    another account changes nothing else."""
    keys = np.fromiter((int.from_bytes(hashlib.blake2b(f"{seed}:{c}".encode(), digest_size=8).digest(), "big") for c in conv_ids),
                       dtype=np.uint64, count=len(conv_ids))
    order = np.lexsort((keys, account_index))
    sorted_accounts = account_index[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_accounts)) + 1] if len(order) else np.zeros(0, dtype=np.int64)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    mask = np.zeros(len(conv_ids), dtype=bool)
    mask[order[rank < cap]] = True
    return mask


def publish_threshold(min_accounts: int, scale: float) -> float:
    """A noisy account count must reach this for its cluster to be shown: `min_accounts` plus two noise
    standard deviations, so a cluster of one account is shown with probability about 2% at most (it is
    post-processing: the guarantee holds whatever the threshold)."""
    return float(min_accounts) + 2.0 * scale


def guarantee_for_thresholds(p: PrivacySettings) -> dict[str, Any]:
    """`privacy_guarantee` of a threshold-mode release: the gates, and that there is no formal bound."""
    return {"mode": "thresholds", "unit": UNIT, "formal_guarantee": False, "min_accounts": p.min_accounts,
            "min_conversations": p.min_conversations, "max_conversations_per_account": p.max_conversations_per_account,
            "max_account_share": p.max_account_share, "public_figure_accounts": p.public_figure_accounts}
