"""Shared helpers for the analyses: loading a run, statistics, and output.

Every analysis reads the run's published `aggregates` JSON, or reads internal tables and reduces
them to published clusters before anything is reported. No analysis ever outputs a conversation id,
an account (hash) or conversation text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.markup import escape

from convoscope.errors import ConvoscopeError
from convoscope.store import RunStore
from convoscope.text import clean_text

Z95 = 1.959963984540054


class AnalysisError(ConvoscopeError):
    """An analysis cannot run on this run directory (missing data, bad option)."""

    exit_code = 2


@dataclass
class Run:
    """A run directory and its published aggregates."""

    store: RunStore
    aggregates: dict[str, Any]
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def info(self) -> dict[str, Any]:
        return self.aggregates["run"]

    @property
    def levels(self) -> int:
        return int(self.info["levels"])

    @property
    def base_level(self) -> int:
        return self.levels - 1

    def clusters(self, level: int | None = None, *, include_other: bool = False) -> list[dict[str, Any]]:
        out = []
        for c in self.aggregates["clusters"]:
            if c["kind"] != "cluster" and not include_other:
                continue
            if level is not None and c["level"] != level:
                continue
            out.append(c)
        return out

    @property
    def differentially_private(self) -> bool:
        """A run released under `--privacy dp`: only its aggregates are covered by the guarantee."""
        return (self.aggregates.get("privacy_guarantee") or {}).get("mode") == "dp"

    def published_ids(self) -> set[str]:
        return {c["id"] for c in self.aggregates["clusters"] if c["kind"] == "cluster"}

    def check_level(self, level: int | None) -> int:
        if level is None:
            return self.base_level
        if not 0 <= level < self.levels:
            raise AnalysisError(f"--level must be between 0 (top) and {self.levels - 1} (base) for this run")
        return level

    def facet_kind(self, name: str) -> str | None:
        for f in self.aggregates.get("facets", []):
            if f["name"] == name:
                return f["kind"]
        return None


def load_run(path: str | Path, facet: str | None = None) -> Run:
    """A finished run's published aggregates; `facet` picks one of several hierarchies."""
    store = RunStore(path).for_facet(facet)
    store.require_finished()  # names the missing stage and the command that resumes the run
    if not store.has("json:aggregates"):
        raise AnalysisError(f"{path}: the run has no published aggregates yet; finish it with `convoscope run` first")
    agg = store.read_json("aggregates")
    return Run(store=store, aggregates=agg, by_id={c["id"]: c for c in agg["clusters"]})


# -- statistics ------------------------------------------------------------------------------------

def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (95% by default). (0, 0) when n is 0."""
    if n <= 0:
        return (0.0, 0.0)
    p = min(1.0, max(0.0, k / n))  # a differential-privacy release's noisy counts can put a part above its whole
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of x1/n1 vs x2/n2: (z, two-sided p). z > 0 means the second is larger."""
    if n1 <= 0 or n2 <= 0:
        return (0.0, 1.0)
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return (0.0, 1.0)
    z = (x2 / n2 - x1 / n1) / se
    return (z, normal_two_sided_p(z))


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    from scipy.stats import poisson

    return float(poisson.sf(k - 1, lam))


def pearson(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3:
        return None
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


# -- internal per-conversation view, reduced to published clusters --------------------------------

@dataclass
class ConversationView:
    """Internal per-conversation columns in facets-row order (aligned with the embeddings).

    `cluster[level]` holds the conversation's cluster id at each level, or None where that cluster is
    withheld. Never output any of these columns as such: report only per published cluster.
    """

    accounts: np.ndarray  # object array of keyed account hashes
    created_at: list[datetime | None]
    metadata: list[str | None]
    cluster: list[np.ndarray]  # per level: object array of published cluster id or None

    def __len__(self) -> int:
        return len(self.accounts)


def conversation_view(run: Run, analysis: str) -> ConversationView:
    """The run's conversations with their published clusters, for analyses that count them anew (with their own
    gates). Refused for a differential-privacy run: those counts are not covered by its (epsilon, delta)."""
    from convoscope.errors import ConvoscopeError
    from convoscope.stages.rows import analysed_rows

    if run.differentially_private:
        raise ConvoscopeError(f"`analyze {analysis}` counts the run's conversations anew, outside the differential-privacy release, so it "
                              "would break the run's guarantee; it is available for runs with --privacy thresholds only")

    rows = analysed_rows(run.store)
    assignments = run.store.read_table("assignments")
    order = {cid: i for i, cid in enumerate(assignments.column("conv_id").to_pylist())}
    idx = np.asarray([order[c] for c in rows.conv_ids], dtype=np.int64)
    published = run.published_ids()
    cluster = []
    for level in range(run.levels):
        ids = np.asarray(assignments.column(f"level_{level}").to_pylist(), dtype=object)[idx]
        cluster.append(np.asarray([c if c in published else None for c in ids], dtype=object))
    created = [None if t is None else (t if t.tzinfo else t.replace(tzinfo=timezone.utc)) for t in rows.table.column("created_at").to_pylist()]
    return ConversationView(accounts=rows.accounts, created_at=created, metadata=rows.table.column("metadata").to_pylist(),
                            cluster=cluster)


def parse_date(text: str) -> datetime:
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AnalysisError(f"'{text}' is not a date: use YYYY-MM-DD or an ISO timestamp") from None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


# -- output ----------------------------------------------------------------------------------------

def print_json(obj: Any) -> None:
    print(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str).decode())


def console() -> Console:
    return Console()


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<1e-6" if p < 1e-6 else (f"{p:.2g}" if p < 0.01 else f"{p:.3f}")


def label(c: dict[str, Any], width: int = 60) -> str:
    """A cluster's name for a rich table cell or markup string: cleaned, shortened, markup-escaped.

    Table cells are rendered as rich markup, so an unescaped name like "[/]" would crash the table
    and "[link=...]" would become a hyperlink; terminal escape sequences are removed. Shortened
    before escaping so the cut cannot split an escape. Not for JSON output (use the raw name).
    """
    name = clean_text(str(c.get("name") or c["id"]))
    return escape(name if len(name) <= width else name[: width - 1] + "…")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)
