"""The Python API: `Pipeline(...).fit(data) -> Result`, and `load_run(path) -> Result`. See docs/api.md.

    from convoscope import Pipeline
    result = Pipeline(min_accounts=5, conversations_per_cluster=50).fit(records)
    result.clusters            # the published clusters, a pandas DataFrame

The CLI's `run` command is a thin layer over `Pipeline.fit`. What a Result shows an analyst (clusters,
hierarchy, aggregates, report, explorer, analyses) comes from the published aggregates only; the one
exception is `Result.assignments`, the data owner's per-conversation view, which is not for sharing.
"""

from __future__ import annotations

import copy
import os
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from convoscope.analyses.common import AnalysisError, Run, parse_date
from convoscope.components import Components
from convoscope.config import Config, _format_validation_error, load_config
from convoscope.errors import ConfigError, ConvoscopeError
from convoscope.ingest import MemorySource
from convoscope.store import RunStore
from convoscope.wording import count

# Short keyword -> dotted config key. Anything else: Pipeline(config=Config(...) or "file.toml"), or
# Pipeline(settings={"map.n_neighbors": 10}).
SETTINGS: dict[str, str] = {
    "llm": "llm.facets", "naming_llm": "llm.naming", "auditor_llm": "llm.auditor", "max_cost": "llm.max_cost_usd",
    "cache_dir": "llm.cache_dir",
    "embedding": "embedding.model", "conversations_per_call": "facets.conversations_per_call",
    "conversations_per_cluster": "cluster.conversations_per_cluster", "min_conversations_per_cluster": "cluster.min_conversations_per_cluster", "min_clusters": "cluster.min_clusters",
    "max_clusters": "cluster.max_clusters",
    "levels": "hierarchy.levels", "top_clusters": "hierarchy.top_clusters",
    "min_accounts": "privacy.min_accounts", "min_conversations": "privacy.min_conversations",
    "max_conversations_per_account": "privacy.max_conversations_per_account",
    "max_account_share": "privacy.max_account_share", "include_raw_text": "privacy.include_raw_text",
    "scrub_identifiers": "privacy.scrub_identifiers",
    "hierarchies": "facets.hierarchy_facets", "screener": "facets.screener",
    "format": "ingest.format", "skip_invalid": "ingest.skip_invalid", "account_field": "ingest.account_field",
    "time_field": "ingest.time_field", "id_field": "ingest.id_field", "text_field": "ingest.text_field",
    "missing_accounts": "ingest.missing_accounts",
    "seed": "seed",
}  # fmt: skip
_SPECIAL = ("cache",)  # cache=False: neither the LLM nor the embedding cache
_OWN = ("config", "settings", "embedder", "clusterer", "reducer", "namer", "progress", "console")
ANALYSES = ("usage", "languages", "concerning", "coordination", "classifier")


def _overrides(settings: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "cache":
            out["llm.cache"] = out["embedding.cache"] = bool(value)
            continue
        if key == "llm" and value is None:
            value = "none"
        if key == "hierarchies" and isinstance(value, str):
            value = [f.strip() for f in value.split(",") if f.strip()]
        if key == "cache_dir" and value is not None:
            value = str(value)
        out[SETTINGS[key]] = value
    return out


def build_config(config: Config | str | os.PathLike | Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """A validated Config from a Config, a TOML file or a nested dict, with dotted overrides applied
    ({"privacy.min_accounts": 3}); None values are applied too (they unset a setting)."""
    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, Config):
        data = config.model_dump()
    elif isinstance(config, (str, os.PathLike)):
        data = load_config(Path(config)).model_dump()
    elif isinstance(config, Mapping):
        data = copy.deepcopy(dict(config))
    else:
        raise TypeError(f"config must be a Config, a TOML file path or a dict, not {type(config).__name__}")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"setting {dotted!r}: {key!r} is not a section")
        node[leaf] = value
    from pydantic import ValidationError

    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, "Pipeline settings")) from None


def _input(data: Any) -> Path | MemorySource:
    if isinstance(data, (str, os.PathLike)):
        return Path(data)
    if isinstance(data, MemorySource):
        return data
    return MemorySource.from_data(data)


class Pipeline:
    """A configured pipeline. Settings come from `config` (a Config, a TOML file path or a dict), then
    `settings` (dotted keys), then the short keywords (see SETTINGS, e.g. min_accounts, levels, seed, llm).

    Components replace our defaults (convoscope.components): `embedder` (`name` + `encode(texts)`),
    `clusterer` (`fit_predict(vectors)`), `reducer` (`fit_transform(vectors)` -> (n, 2)), `namer`
    (`name_clusters(samples) -> [(name, description)]`, its names checked like an LLM's)."""

    def __init__(self, config: Config | str | os.PathLike | Mapping[str, Any] | None = None, *,
                 settings: Mapping[str, Any] | None = None, embedder: Any = None, clusterer: Any = None, reducer: Any = None, namer: Any = None,
                 progress: bool = True, console: Any = None, **keywords: Any):
        unknown = sorted(k for k in keywords if k not in SETTINGS and k not in _SPECIAL)
        if unknown:
            accepted = ", ".join([*_OWN, *sorted([*SETTINGS, *_SPECIAL])])
            raise TypeError(
                f"Pipeline() got unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"accepted: {accepted}. Any other setting: settings={{'section.name': value}} or config=Config(...) / 'file.toml' "
                "(`convoscope config --show` lists them)")
        self.config = build_config(config, {**dict(settings or {}), **_overrides(keywords)})
        self.components = Components(embedder=embedder, clusterer=clusterer, reducer=reducer, namer=namer)
        self.progress = progress
        self.console = console

    def __repr__(self) -> str:
        parts = [f"mode={'llm' if self.config.llm_mode else 'extractive'}"]
        parts += [f"{role}={ident}" for role, ident in self.components.describe().items()]
        return f"Pipeline({', '.join(parts)})"

    def fit(self, data: Any, out: str | os.PathLike | None = None) -> "Result":
        """Run the pipeline on `data` and return the Result.

        data: a path (a file or a directory in any supported format), an iterable of record dicts (any
        supported JSON record shape), a pandas DataFrame or a pyarrow Table (one row per conversation, or
        one per message). In-memory data is read into memory once and never written anywhere.
        out: the run directory (created; a rerun into it resumes and recomputes only what changed). None:
        a private temporary directory, deleted when the Result (and every Result derived from it) is gone."""
        from convoscope.pipeline import run_pipeline

        source = _input(data)
        earlier = RunStore(Path(out)).manifest if out is not None and (Path(out) / "manifest.json").is_file() else {}
        if "assigned_from" in earlier:  # the mirror of assign's check: a run would overwrite the placed data and keep its assigned_from
            raise ConvoscopeError(f"{out}: holds conversations placed into another run's clusters by `convoscope assign`; "
                                  "choose another output directory for a new run")
        tmp = None
        if out is None:
            tmp = tempfile.TemporaryDirectory(prefix="convoscope-run-")  # 0700
            out = Path(tmp.name) / "run"
        components = self.components if self.components.describe() else None
        try:
            store = run_pipeline(source, out, self.config, console=self.console, show_progress=self.progress, components=components)
        except BaseException:
            if tmp is not None:
                tmp.cleanup()
            raise
        from rich.console import Console
        from rich.markup import escape

        from convoscope.explorer.bundle import refresh_stale_explorers

        console = self.console or Console(stderr=True)
        if earlier.get("input") and earlier["input"] != store.manifest.get("input"):  # a resume is silent; a replacement is not
            console.print(f"  note: {escape(str(out))} held a run of {escape(str(earlier['input']))}; it now holds this run of "
                          f"{escape(str(store.manifest.get('input')))}")
        refresh_stale_explorers(store.root, console)  # a page written before this rerun
        return Result(store.root, _tmp=tmp, _embedder=self.components.embedder)


class Result:
    """A finished run: its published release as DataFrames and dicts, and methods for the report, the
    explorer and the analyses. `facet` picks one hierarchy when the run built several."""

    def __init__(self, run_dir: str | os.PathLike, facet: str | None = None, *, _tmp: Any = None, _embedder: Any = None):
        self._tmp = _tmp  # keeps a temporary run directory alive as long as a Result uses it
        self._embedder = _embedder  # the embedder injected into the fit that made this run: assign's default
        self._root = RunStore(Path(run_dir))
        self.store = self._root.for_facet(facet)
        self.store.require_finished()  # an interrupted run: names the missing stage and how to resume
        self._aggregates = self.store.read_json("aggregates")

    # -- identity ------------------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        """The directory of this hierarchy (the run directory, or RUN/hierarchies/<facet>)."""
        return self.store.root

    @property
    def facet(self) -> str:
        return self._aggregates["run"]["facet"]

    @property
    def facets(self) -> list[str]:
        """Every hierarchy of the run, the primary first."""
        return self._root.facets()

    def for_facet(self, facet: str) -> "Result":
        """The Result of another hierarchy of the same run."""
        return Result(self._root.root, facet, _tmp=self._tmp, _embedder=self._embedder)

    def __repr__(self) -> str:
        run = self._aggregates["run"]
        published = sum(1 for c in self._aggregates["clusters"] if c["kind"] == "cluster")
        return (f"<convoscope.Result {count(run['conversations'], 'conversation')}, {count(run['levels'], 'level')}, {count(published, 'published cluster')}, "
                f"{self._aggregates['withheld']['clusters']} withheld; facet {run['facet']!r}; {self.run_dir}>")

    # -- the release ---------------------------------------------------------------------------------

    @property
    def aggregates(self) -> dict[str, Any]:
        """The published aggregates (a copy): the one release, see docs/architecture.md."""
        return copy.deepcopy(self._aggregates)

    @property
    def clusters(self) -> Any:
        """The published clusters and "other (withheld)" remainders as a DataFrame: id, level (0 = top),
        parent, kind ("cluster" or "other"), name, description, size, accounts, share."""
        pd = _pandas()
        columns = ["id", "level", "parent", "kind", "name", "description", "size", "accounts", "share"]
        return pd.DataFrame([{k: c.get(k) for k in columns} for c in self._aggregates["clusters"]], columns=columns)

    def _ordered(self) -> list[tuple[int, dict[str, Any], list[str]]]:
        """(depth, cluster, path of names) in depth-first order, largest first, remainders last."""
        children: dict[str | None, list[dict[str, Any]]] = {}
        for c in self._aggregates["clusters"]:
            children.setdefault(c["parent"], []).append(c)
        out: list[tuple[int, dict[str, Any], list[str]]] = []

        def walk(parent: str | None, depth: int, path: list[str]) -> None:
            for c in sorted(children.get(parent, []), key=lambda c: (c["kind"] == "other", -c["size"], c["id"])):
                here = [*path, c["name"]]
                out.append((depth, c, here))
                walk(c["id"], depth + 1, here)

        walk(None, 0, [])
        return out

    @property
    def hierarchy(self) -> Any:
        """The published tree as a DataFrame in depth-first order (each parent followed by its children,
        largest first, the "other" remainder last): depth (= level), id, parent, kind, name, size,
        accounts, share, path (the names from the top down to the cluster, joined by " / ").
        `hierarchy_tree()` gives the same as nested dicts."""
        pd = _pandas()
        rows = [{"depth": depth, "id": c["id"], "parent": c["parent"], "kind": c["kind"], "name": c["name"], "size": c["size"],
                 "accounts": c.get("accounts"), "share": c.get("share"), "path": " / ".join(path)}
                for depth, c, path in self._ordered()]
        return pd.DataFrame(rows, columns=["depth", "id", "parent", "kind", "name", "size", "accounts", "share", "path"])

    def hierarchy_tree(self) -> dict[str, Any]:
        """The published tree as nested dicts: {"name", "size", "children": [{"id", "kind", "name",
        "description", "size", "accounts", "share", "children": [...]}, ...]}."""
        run = self._aggregates["run"]
        root: dict[str, Any] = {"name": "all conversations", "size": run["conversations"], "children": []}
        nodes: dict[str, dict[str, Any]] = {}
        for _depth, c, _path in self._ordered():
            node = {k: c.get(k) for k in ("id", "kind", "name", "description", "size", "accounts", "share")}
            node["children"] = []
            nodes[c["id"]] = node
            (nodes[c["parent"]] if c["parent"] is not None else root)["children"].append(node)
        return root

    @property
    def assignments(self) -> Any:
        """Each analysed conversation's PUBLISHED cluster at every level, as a DataFrame: conv_id,
        level_0 (top) ... level_{L-1} (base); None where its cluster at that level is withheld.

        This is the data owner's view, read from the run's internal tables: it holds your conversation ids,
        so it is NOT for sharing (the release is `aggregates`, `clusters`, the report and the explorer)."""
        pd = _pandas()
        table = self.store.read_table("assignments")
        published = {c["id"] for c in self._aggregates["clusters"] if c["kind"] == "cluster"}
        data: dict[str, list[Any]] = {"conv_id": table.column("conv_id").to_pylist()}
        for name in table.column_names:
            if name.startswith("level_"):
                data[name] = [v if v in published else None for v in table.column(name).to_pylist()]
        return pd.DataFrame(data)

    # -- outputs -------------------------------------------------------------------------------------

    def report(self, as_json: bool = False, depth: int = 2) -> Any:
        """What `convoscope report` prints, as plain text (no colour codes); as_json: its JSON as a dict."""
        from convoscope.report import print_report, report_json

        if as_json:
            return report_json(self.store)
        import io

        from rich.console import Console

        buffer = io.StringIO()
        print_report(self.store, Console(file=buffer, no_color=True, color_system=None, highlight=False, width=120,
                                         force_terminal=False, force_jupyter=False), depth=depth)
        return buffer.getvalue()

    def explorer(self, path: str | os.PathLike | None = None) -> Path:
        """Write the self-contained offline explorer page; returns its path. Default: explorer.html in the
        run directory, or in the current directory for a temporary run (which is deleted with the Result)."""
        from convoscope.explorer import write_explorer

        if path is None and self._tmp is not None:
            path = Path("explorer.html")
        return write_explorer(self.store.root, Path(path) if path is not None else None)

    def _run(self) -> Run:
        agg = self._aggregates
        return Run(store=self.store, aggregates=agg, by_id={c["id"]: c for c in agg["clusters"]})

    def analyze(self, name: str, **options: Any) -> dict[str, Any]:
        """One analysis of docs/analyses.md as its JSON result: "usage" (levels), "languages" (level,
        min_support, min_language, top), "concerning" (level, top, min_conversations), "coordination"
        (rate_ratio, min_template_accounts, burst_z, min_burst, top) or "classifier"
        (flag_field, level, min_conversations, concern_high, flag_low, flag_high, concern_low)."""
        if name not in ANALYSES:
            raise ValueError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}")
        import importlib

        function = getattr(importlib.import_module(f"convoscope.analyses.{name}"), name)
        return function(self._run(), **options)

    def compare(self, other: "Result | str | os.PathLike | None" = None, split_at: str | date | datetime | None = None,
                **options: Any) -> dict[str, Any]:
        """Clusters that appeared, grew or shrank: this run against `other` (a Result or a run directory),
        or this run split at a date (`split_at`: "YYYY-MM-DD", a date or a datetime). Options: level, alpha,
        and for two runs match_threshold. See docs/analyses.md."""
        from convoscope.analyses.compare import compare_runs, compare_split

        if (other is None) == (split_at is None):
            raise AnalysisError("give either another run (other=) or a date (split_at=), not both or neither")
        if split_at is not None:
            if isinstance(split_at, str):
                when = parse_date(split_at)
            elif isinstance(split_at, datetime):
                when = split_at if split_at.tzinfo else split_at.replace(tzinfo=timezone.utc)
            elif isinstance(split_at, date):
                when = datetime(split_at.year, split_at.month, split_at.day, tzinfo=timezone.utc)
            else:
                raise TypeError(f"split_at must be a 'YYYY-MM-DD' string, a date or a datetime, not {type(split_at).__name__}")
            return compare_split(self._run(), when, **options)
        if other is not None and not isinstance(other, Result):
            other = load_run(other, self.facet if self.facet != self._root_facet() else None)
        assert isinstance(other, Result)  # checked above: exactly one of other and split_at
        return compare_runs(self._run(), other._run(), **options)

    def assign(self, new_input: Any, out: str | os.PathLike, *, threshold: float | None = None, embedder: Any = None,
               **overrides: Any) -> "Result":
        """Place new conversations into this run's clusters without rebuilding the hierarchy (`convoscope
        assign`, docs/analyses.md): facets and embeddings with this run's settings, each conversation in its
        nearest base cluster or in "Unassigned (new topic)" below `threshold`, published under the same
        privacy gates. new_input: what `Pipeline.fit` takes (a path, record dicts, a DataFrame or a pyarrow
        Table; in-memory data is never written anywhere). `overrides`: dotted ingest.* / llm.* settings, e.g.
        **{"ingest.skip_invalid": True}. Compare the two with `result.compare(new)`.
        embedder: for a run made with an injected embedder (`Pipeline(embedder=...)`), the same embedder (same
        `name`); the Result of that `fit` passes its own by default. A mismatch is refused before anything is read."""
        from convoscope.assign import assign

        embedder = embedder if embedder is not None else self._embedder
        store = assign(self._root.root, _input(new_input), Path(out), threshold=threshold, config_overrides=overrides or None,
                       show_progress=False, embedder=embedder)
        return Result(store.root, _embedder=embedder)

    def _root_facet(self) -> str:
        return self.facets[0] if self.facets else self.facet


def load_run(path: str | os.PathLike, facet: str | None = None) -> Result:
    """An existing run directory (from `convoscope run`, `convoscope demo` or `Pipeline.fit(..., out=...)`)."""
    return Result(path, facet)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("convoscope's Result tables are pandas DataFrames: pip install pandas") from None
    return pandas


__all__ = ["SETTINGS", "Config", "Pipeline", "Result", "build_config", "load_run"]
