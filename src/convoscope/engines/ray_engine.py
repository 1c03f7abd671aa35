"""The Ray engine: the per-conversation stages as Ray Data pipelines over shards of the input.

Each stage keeps its `Stage` (name, settings, fingerprint: a run resumes on either engine); only its
work changes. The driver plans shards (a file, a range of the conversations it yields), Ray Data runs
one task per shard on a pool of actors (`map_batches` with `concurrency`), and the driver concatenates
what the shards return in shard order, so the artifacts are the local engine's, row for row:

- ingest: one task per input file runs the ingest stage's own work on that file (readers, checks,
  keyed account hashes); the driver merges them with what crosses files (duplicates, repeated ids,
  mixed account ids), exactly as one reader over the directory decides it.
- screen and facets: each task runs the stage's own work on its shard inside an actor holding its own
  LLM client (the same prompts; the shared on-disk cache, so a retried task re-pays only what was in
  flight; the cost cap divided between the actors).
- embed: an actor pool holding the model. The local stage encodes, per batch of `embedding.batch_size`
  rows, the texts not yet cached, and the last float digits depend on what is encoded together; so the
  driver first learns every row's text key (a keyed hash) and which are cached, plans the same encode
  batches, and the actors encode exactly those: bit-identical vectors.
- cluster: the driver fits k-means on its sample (as the local stage does); assigning every row to its
  nearest centroid is a Ray Data map over blocks of the embeddings, in the local stage's block size.
- everything after it runs in the driver (per-cluster work).

The input is a local file or directory, or a URI on any pyarrow filesystem (`s3://bucket/prefix/`): the
workers open the files themselves through pyarrow.fs (ingest/files.py), with the local readers and checks.
Raw conversation text stays inside the worker that reads it: tasks carry file names and positions,
and return facets, keyed hashes and vectors (in LLM mode the texts embedded are the facet summaries).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import pickle
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from convoscope.analysis_text import FAILED_SUMMARY, extractive_text
from convoscope.config import Config
from convoscope.context import RunContext
from convoscope.engines.ray_vllm import VLLMContext, build_processor, uses_vllm
from convoscope.errors import ConfigError, ConvoscopeError, InputError
from convoscope.ingest import IngestReport
from convoscope.ingest.files import input_location, list_files
from convoscope.ingest.json_source import UnknownFormat
from convoscope.ingest.reader import SKIP_INVALID_HINT, check_named_fields, mixed_accounts_error, read_file
from convoscope.model import Conversation
from convoscope.secrets_key import key_id, keyed_hash, secret_key
from convoscope.stage_runner import Stage, StageOutput, optional_field
from convoscope.stages.cluster import ClusterRecord
from convoscope.stages.embed import EMBED, EMBEDDING_DTYPE, EmbedRecord, centre_languages, embed_texts
from convoscope.stages.facets import FACETS, FacetsRecord, check_some_facets
from convoscope.stages.ingest import INGEST, IngestRecord
from convoscope.stages.screen import SCREEN, ScreenRecord
from convoscope.store import RunStore
from convoscope.wording import count

if TYPE_CHECKING:
    from rich.console import Console

_TEXT_KEY_PURPOSE = "convoscope ray text key"


# -- the plan: which conversations each task reads --------------------------------------------------

@dataclass(frozen=True)
class FilePlan:
    """One input file as read on its own: `read` conversations, of which those at positions `drop`
    duplicate an earlier file's (the driver drops them, as one reader over the directory does)."""

    path: str
    name: str  # the file's name inside the input directory (conversation ids derive from it)
    read: int
    drop: tuple[int, ...] = ()


@dataclass(frozen=True)
class Shard:
    """Positions [start, stop) of a file's conversations, less `drop`: rows [row0, row0 + rows) of the run."""

    index: int
    path: str
    name: str
    start: int
    stop: int
    drop: tuple[int, ...]
    row0: int
    rows: int


def plan_shards(files: list[FilePlan], per_shard: int) -> list[Shard]:
    """Shards of at most `per_shard` kept conversations, never across files, in input order."""
    shards: list[Shard] = []
    row = 0
    for f in files:
        drop = sorted(set(f.drop))
        kept = [p for p in range(f.read) if not _contains(drop, p)] if drop else None
        n_kept = f.read - len(drop)
        for lo in range(0, n_kept, per_shard):
            hi = min(lo + per_shard, n_kept)
            start = kept[lo] if kept is not None else lo
            stop = (kept[hi - 1] + 1) if kept is not None else hi
            in_range = tuple(p for p in drop if start <= p < stop)
            shards.append(Shard(len(shards), f.path, f.name, start, stop, in_range, row, hi - lo))
            row += hi - lo
    return shards


def _contains(sorted_list: list[int], value: int) -> bool:
    import bisect

    i = bisect.bisect_left(sorted_list, value)
    return i < len(sorted_list) and sorted_list[i] == value


def shard_conversations(shard: Shard, config: Config, report: IngestReport | None = None) -> Iterator[Conversation]:
    """The shard's conversations, read from its file (the text never leaves the worker)."""
    drop = set(shard.drop)
    source = input_location(shard.path)  # a local path, or a file on S3 or another pyarrow filesystem
    for pos, conv in enumerate(read_file(source, shard.name, config.ingest, report if report is not None else IngestReport())):
        if pos >= shard.stop:
            return
        if pos >= shard.start and pos not in drop:
            yield conv


# -- the worker side -------------------------------------------------------------------------------

@dataclass
class ShardContext(RunContext):
    """A RunContext whose input is one shard, with a scratch store in a private temporary directory: a
    stage's own work runs on it unchanged."""

    shard: Shard | None = None
    seen: list[Conversation] = field(default_factory=list)  # ingest: what the shard yielded (id, account, hash)
    report: IngestReport | None = None  # ingest: the report the stage filled

    def iter_input(self, report: IngestReport | None = None) -> Iterator[Conversation]:
        assert self.shard is not None
        self.report = report
        if report is not None:  # the ingest stage: remember what crosses files (no text kept: see _Seen)
            return self._remember(shard_conversations(self.shard, self.config, report))
        return shard_conversations(self.shard, self.config, report)

    def _remember(self, convs: Iterator[Conversation]) -> Iterator[Conversation]:
        for conv in convs:
            self.seen.append(_Seen(conv.id, bytes.fromhex(conv.content_hash()), conv.account_id is not None,  # type: ignore[arg-type]
                                   len(conv.messages), conv.created_at is not None))
            yield conv


@dataclass(frozen=True)
class _Seen:
    id: str
    content: bytes
    has_account: bool
    messages: int
    has_time: bool


class ShardWorker:
    """A Ray Data actor: runs one job ('ingest', 'screen', 'facets', 'embed_keys', 'embed_encode') on
    each task it is given and returns one row per task: its index and a pickled result (or error)."""

    def __init__(self, job: str, config_json: str, selected: set[str] | None = None, single_thread: bool = False):
        self.job = job
        self.config = Config.model_validate_json(config_json)
        self.selected = selected
        self.worker_id = uuid.uuid4().hex
        self.llm: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.embedder: Any = None
        if job in ("screen", "facets") and self.config.llm_mode:
            from convoscope.llm import build_client

            self.llm = build_client(self.config.llm, progress=False)
            self.loop = asyncio.new_event_loop()
        if job.startswith("embed"):
            from convoscope.embedders import make_embedder

            self.embedder = make_embedder(self.config.embedding.model)
            # the model's thread count changes the last float digits: one thread where the local stage
            # would encode in single-threaded worker processes (large inputs), else the model's default
            model = getattr(self.embedder, "_model", None)
            if single_thread and model is not None and hasattr(model, "threads"):
                model.threads = 1

    def __del__(self) -> None:
        # Ray Data deletes the actor's UDF on a graceful shutdown: close the client's HTTP session there
        # (else aiohttp prints "Unclosed client session" from every worker)
        llm, loop = getattr(self, "llm", None), getattr(self, "loop", None)
        if llm is not None and loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(llm.aclose())
            finally:
                loop.close()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {"index": [], "payload": []}
        for task_json in batch["task"]:
            task = json.loads(task_json)
            try:
                result = getattr(self, f"_{self.job}")(task)
            except ConvoscopeError as exc:  # the user's error (bad input, budget): raised by the driver, in input order
                result = {"error": exc}
            out["index"].append(task["index"])
            out["payload"].append(pickle.dumps(result))
        return out

    def _context(self, tmp: str, shard: Shard) -> ShardContext:
        from rich.console import Console

        ctx = ShardContext(config=self.config, store=RunStore(tmp, create=True), input_path=Path(shard.path),
                           console=Console(stderr=True, quiet=True), show_progress=False, shard=shard)
        ctx.llm, ctx._loop = self.llm, self.loop  # the actor's client, kept across tasks (never closed here)
        return ctx

    def _ingest(self, task: dict[str, Any]) -> dict[str, Any]:
        shard = Shard(**task["shard"])
        with tempfile.TemporaryDirectory(prefix="convoscope-shard-") as tmp:
            ctx = self._context(tmp, shard)
            try:
                out = INGEST.work(ctx)
            except UnknownFormat as exc:
                if task["in_directory"]:
                    return {"skipped": str(exc)}
                raise
            except InputError:
                if ctx.report is not None and ctx.report.conversations == 0 and not ctx.seen:
                    # every record of this file was invalid and skipped: the merged input may still have some
                    return {"record": {"report": ctx.report.to_dict()}, "table": None, "seen": [], "key_id": None}
                raise
            return {"record": out.record.manifest_fields(), "table": ctx.store.read_table("conversations"), "seen": ctx.seen,
                    "key_id": ctx.store.manifest.get("account_key_id")}

    def _llm_stage(self, task: dict[str, Any], stage: Stage[Any], table: str, *inputs: Any) -> dict[str, Any]:
        shard = Shard(**task["shard"])
        with tempfile.TemporaryDirectory(prefix="convoscope-shard-") as tmp:
            ctx = self._context(tmp, shard)
            ctx.store.mark_complete("ingest", "shard", [], seconds=0.0, report={"conversations": shard.rows})
            out = stage.work(ctx, *inputs)
            result = {"record": out.record.manifest_fields(), "table": ctx.store.read_table(table)}
        if self.llm is not None:
            result["usage"] = (self.worker_id, self.llm.usage_summary())
        return result

    def _screen(self, task: dict[str, Any]) -> dict[str, Any]:
        return self._llm_stage(task, SCREEN, "selection")

    def _facets(self, task: dict[str, Any]) -> dict[str, Any]:
        return self._llm_stage(task, FACETS, "facets", self.selected)

    def _texts(self, piece: dict[str, Any]) -> Iterator[tuple[int, str]]:
        """(row, text clustered) of a piece: summaries given inline (LLM mode), else the shard re-read."""
        if "texts" in piece:
            yield from enumerate(piece["texts"], piece["row0"])
            return
        shard = Shard(**piece["shard"])
        facets = self.config.facets
        for row, conv in enumerate(shard_conversations(shard, self.config), shard.row0):
            yield row, extractive_text(conv.user_text(" "), facets.extractive_max_chars, self.config.privacy.scrub_identifiers)

    def _vector_cache(self) -> Any:
        from convoscope.embedders import VectorCache

        return VectorCache(self.config.llm.resolved_cache_dir(), self.embedder.name) if self.config.embedding.cache else None

    def _embed_keys(self, task: dict[str, Any]) -> dict[str, Any]:
        """Phase 1: each row's text key, and the vectors the cache already holds."""
        rows, texts = zip(*self._texts(task["piece"])) if task["piece"] else ((), ())
        secret = secret_key()
        keys = [bytes.fromhex(keyed_hash(secret, _TEXT_KEY_PURPOSE, t.encode()))[:16] for t in texts]
        cache = self._vector_cache()
        cached: dict[int, np.ndarray] = {}
        if cache is not None:
            for row, vector in zip(rows, cache.get_many(list(texts))):
                if vector is not None:
                    cached[row] = vector
            cache.close()
        return {"rows": list(rows), "keys": keys, "cached": cached, "model": self.embedder.name}

    def _embed_encode(self, task: dict[str, Any]) -> dict[str, Any]:
        """Phase 2: encode each planned group in one call (as the local stage's batch would), cache the vectors."""
        wanted = {r for group in task["groups"] for r in group}
        texts = {row: text for piece in task["pieces"] for row, text in self._texts(piece) if row in wanted}
        cache = self._vector_cache()
        vectors: dict[int, np.ndarray] = {}
        for group in task["groups"]:
            fresh, _ = embed_texts(self.embedder, [texts[r] for r in group], cache)  # the local stage's unit of work
            vectors.update(zip(group, fresh))
        if cache is not None:
            cache.close()
        return {"vectors": vectors}


# -- the driver side ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RayIngestRecord(IngestRecord):
    ray_files: list[list[Any]] | None = optional_field()  # [[path, name, read, drop]]: the shard plan, kept for a resume


@dataclass(frozen=True)
class RayClusterRecord(ClusterRecord):
    assigned_blocks: int | None = optional_field()  # blocks of rows assigned to their centroids on Ray workers


class RayEngine:
    """Connects to Ray (a local one unless `engine.ray_address`) and gives each per-conversation stage its
    Ray work; `stage(s)` returns `s` unchanged for the stages that run in the driver."""

    name = "ray"

    def __init__(self, config: Config, console: "Console"):
        try:
            import ray
        except ImportError:
            raise ConfigError('--engine ray needs Ray: pip install "convoscope[ray]"') from None
        if config.privacy.include_raw_text:
            raise ConfigError("--engine ray does not store raw text (privacy.include_raw_text); run it on the local engine")
        self.config = config
        self.console = console
        self._usage: dict[str, dict[str, Any]] = {}  # worker id -> its client's latest usage summary
        self._plan: list[FilePlan] | None = None
        self._charged = 0.0  # workers' spending already counted by the driver's client
        if not ray.is_initialized():
            address = config.engine.ray_address
            ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
        self.workers = config.engine.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._stages: dict[str, Callable[..., StageOutput[Any]]] = {"ingest": self._ingest, "screen": self._screen, "facets": self._facets,
                                                                    "embed": self._embed, "cluster": self._cluster}

    def stage(self, stage: Stage[Any]) -> Stage[Any]:
        work = self._stages.get(stage.name)
        return stage if work is None else dataclasses.replace(stage, work=work)

    def describe(self) -> dict[str, Any]:
        return {"kind": "ray", "address": self.config.engine.ray_address or "local", "workers": self.workers,
                "shard_conversations": self.config.engine.shard_conversations}

    def llm_usage(self) -> list[dict[str, Any]]:
        return list(self._usage.values())

    # -- running tasks ------------------------------------------------------------------------

    def _worker_config(self, ctx: RunContext, *, split_budget: bool = False) -> str:
        """The config the actors get: the driver's cache directory (its environment may differ on another
        node), and with `split_budget` an equal share of the cost cap per actor, so together they stay under it."""
        llm = ctx.config.llm.model_copy(update={"cache_dir": ctx.config.llm.resolved_cache_dir()})
        if split_budget and llm.max_cost_usd is not None:
            llm = llm.model_copy(update={"max_cost_usd": llm.max_cost_usd / self.workers})
        return ctx.config.model_copy(update={"llm": llm}).model_dump_json()

    def _run(self, ctx: RunContext, job: str, tasks: list[dict[str, Any]], *, selected: set[str] | None = None,
             split_budget: bool = False, single_thread: bool = False) -> list[dict[str, Any]]:
        """Run `job` on every task (one Ray Data row each) and return the results in task order; the first
        error in task order (input order) is raised."""
        import ray

        if not tasks:
            return []
        items = [{"task": json.dumps({**t, "index": i})} for i, t in enumerate(tasks)]
        data_context = ray.data.DataContext.get_current()
        data_context.enable_progress_bars = ctx.show_progress
        if not ctx.show_progress:  # --quiet: no per-dataset execution notes from Ray Data either
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds: Any = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(ShardWorker, fn_constructor_kwargs={"job": job, "config_json": self._worker_config(ctx, split_budget=split_budget),
                                                                "selected": selected, "single_thread": single_thread},
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(items))), num_cpus=1)
        results: list[dict[str, Any] | None] = [None] * len(items)
        for row in ds.iter_rows():
            results[int(row["index"])] = pickle.loads(row["payload"])
        for result in results:
            assert result is not None, "Ray Data returned fewer rows than tasks"
            if "error" in result:
                raise result["error"]
            if "usage" in result:
                worker, usage = result["usage"]
                known = self._usage.get(worker)
                if known is None or usage["total"]["calls"] >= known["total"]["calls"]:
                    self._usage[worker] = usage
        return results  # type: ignore[return-value]

    # -- the plan -----------------------------------------------------------------------------

    def _files(self, ctx: RunContext) -> tuple[list[tuple[Path, str]], bool]:
        if ctx.memory is not None:
            raise ConfigError("--engine ray reads files or directories; conversations held in memory run on the local engine")
        root = input_location(ctx.input_path)  # a local path, or s3://... (any pyarrow filesystem)
        return list_files(root), root.is_dir()

    def shards(self, ctx: RunContext) -> list[Shard]:
        """The shards of the run's conversations: the plan the Ray ingest recorded, else (a run ingested by
        the local engine) a Ray read of the input, which writes nothing."""
        if self._plan is None:
            recorded = (ctx.store.stage_record("ingest") or {}).get("ray_files")
            if recorded is not None:
                self._plan = [FilePlan(p, n, r, tuple(d)) for p, n, r, d in recorded]
            else:
                self._plan = self._read_input(ctx)[3]
        return plan_shards(self._plan, ctx.config.engine.shard_conversations)

    # -- ingest ---------------------------------------------------------------------------------

    def _read_input(self, ctx: RunContext) -> tuple[pa.Table, IngestReport, str | None, list[FilePlan]]:
        files, in_directory = self._files(ctx)
        whole = [{"shard": dataclasses.asdict(Shard(i, str(p), name, 0, 2**62, (), 0, 0))} | {"in_directory": in_directory}
                 for i, (p, name) in enumerate(files)]
        results = self._run(ctx, "ingest", whole)
        return _merge_ingest(ctx, files, results)

    def _ingest(self, ctx: RunContext) -> StageOutput[IngestRecord]:
        from convoscope.stages.ingest import warn_about_accounts  # the local stage's own wording

        table, report, worker_key, plan = self._read_input(ctx)
        account_key = ctx.account_key()
        if worker_key is not None and worker_key != key_id(account_key):
            raise ConfigError("the Ray workers hash account ids with another secret key than this process; give every node the same key "
                              "(CONVOSCOPE_SECRET_KEY, or the same key file: docs/privacy.md)")
        self._plan = plan
        artifacts = [ctx.store.write_table("conversations", table)]
        warn_about_accounts(ctx, report)
        if report.invalid:
            ctx.console.print(f"[yellow]warning:[/] skipped {report.invalid} invalid records")
        ctx.store.update_manifest(account_key_id=key_id(account_key))
        ctx.store.remove_manifest_fields("account_salt")
        return StageOutput(artifacts, RayIngestRecord(report=report.to_dict(), raw_text_stored=False,
                                                      ray_files=[[f.path, f.name, f.read, list(f.drop)] for f in plan]))

    # -- screen and facets ----------------------------------------------------------------------

    def _shard_tasks(self, ctx: RunContext) -> list[dict[str, Any]]:
        return [{"shard": dataclasses.asdict(s)} for s in self.shards(ctx)]

    def _screen(self, ctx: RunContext) -> StageOutput[ScreenRecord]:
        if uses_vllm(ctx.config):  # ray.data.llm on GPU workers (untested on a GPU: engines/ray_vllm.py)
            return SCREEN.work(VLLMContext.of(ctx, build_processor(ctx.config, self.workers)))
        results = self._run(ctx, "screen", self._shard_tasks(ctx), split_budget=True)
        self._charge_driver(ctx)
        table = pa.concat_tables([r["table"] for r in results])
        records = [r["record"] for r in results]
        artifact = ctx.store.write_table("selection", table)
        return StageOutput([artifact], ScreenRecord(question=ctx.config.facets.screener or "", selected=sum(r["selected"] for r in records),
                                                    screened=sum(r["screened"] for r in records), failed=sum(r["failed"] for r in records)))

    def _facets(self, ctx: RunContext, selected: set[str] | None) -> StageOutput[FacetsRecord]:
        if uses_vllm(ctx.config):  # ray.data.llm on GPU workers (untested on a GPU: engines/ray_vllm.py)
            return FACETS.work(VLLMContext.of(ctx, build_processor(ctx.config, self.workers)), selected)
        results = self._run(ctx, "facets", self._shard_tasks(ctx), selected=selected, split_budget=True)
        self._charge_driver(ctx)
        table = pa.concat_tables([r["table"] for r in results])
        first = results[0]["record"]
        failed = sum(r["record"]["failed"] for r in results)
        check_some_facets(ctx, failed, table.num_rows, next((r["record"].get("first_error") for r in results if r["record"].get("first_error")), None))
        if failed:
            ctx.console.print(f"[yellow]warning:[/] facet extraction failed for {count(failed, 'conversation')}; they are kept with empty facets and counted in the manifest")
        artifact = ctx.store.write_table("facets", table)
        return StageOutput([artifact], FacetsRecord(mode=first["mode"], failed=failed, rows=table.num_rows, truncation_rule=first["truncation_rule"],
                                                    max_conversation_tokens=first["max_conversation_tokens"], unavailable=first["unavailable"]))

    def _charge_driver(self, ctx: RunContext) -> None:
        """What the actors spent counts against the driver's cap too (naming and the auditor run there)."""
        if ctx.llm is None:
            return
        spent = sum(u["total"]["cost_usd"] for u in self._usage.values())
        ledger = getattr(ctx.llm, "_ledger", None)  # no public way yet to charge outside spending (asked of the LLM layer)
        if ledger is not None:
            ledger.spent_usd += spent - self._charged
            self._charged = spent

    # -- embed ----------------------------------------------------------------------------------

    def _embed(self, ctx: RunContext) -> StageOutput[EmbedRecord]:
        from convoscope.analysis_text import _facet_column
        from convoscope.components import components_of

        if components_of(ctx).embedder is not None:  # an injected Python object: embed in the driver
            return EMBED.work(ctx)
        config = ctx.config
        facets_record = ctx.store.stage_record("facets")
        assert facets_record is not None, "embed runs after facets"
        n_rows = facets_record["rows"]
        per_task = max(config.embedding.batch_size, config.engine.shard_conversations // config.embedding.batch_size * config.embedding.batch_size)
        if config.llm_mode:
            column = ctx.store.read_table("facets", columns=[_facet_column(ctx)]).column(0).to_pylist()
            texts = [v if v else FAILED_SUMMARY for v in column]
            pieces = [{"row0": lo, "texts": texts[lo:lo + per_task]} for lo in range(0, n_rows, per_task)]
        else:
            shards = self.shards(ctx)
            if sum(s.rows for s in shards) != n_rows:
                raise InputError("the input changed while the run was using it; start the run again", path=str(ctx.input_path))
            pieces = [{"shard": dataclasses.asdict(s)} for s in shards]
        # phase 1: keys and cached vectors
        keys: list[bytes] = [b""] * n_rows
        cached: dict[int, np.ndarray] = {}
        model = ""
        for result in self._run(ctx, "embed_keys", [{"piece": p} for p in pieces]):
            for row, key in zip(result["rows"], result["keys"]):
                keys[row] = key
            cached.update(result["cached"])
            model = result["model"]
        # the local stage's batches: in each, the rows whose text is neither cached nor encoded before (with
        # the cache on: in any earlier batch; off: in this batch), first occurrences in order
        batch_size = config.embedding.batch_size
        source = np.full(n_rows, -1, dtype=np.int64)  # the row whose encoding a row uses; -1: from the cache
        available: dict[bytes, int] = {keys[r]: -1 for r in cached}
        groups: list[list[int]] = []
        for lo in range(0, n_rows, batch_size):
            if not config.embedding.cache:
                available = {}
            group: list[int] = []
            for r in range(lo, min(lo + batch_size, n_rows)):
                if keys[r] in available:
                    source[r] = available[keys[r]]
                else:
                    available[keys[r]] = source[r] = r
                    group.append(r)
            if group:
                groups.append(group)
        # phase 2: encode the groups, a task per run of batches
        vectors: dict[int, np.ndarray] = {}
        tasks = []
        for lo in range(0, n_rows, per_task):
            hi = min(lo + per_task, n_rows)
            task_groups = [g for g in groups if lo <= g[0] < hi]
            if task_groups:
                tasks.append({"groups": task_groups, "pieces": [p for p in pieces if _overlaps(p, lo, hi)]})
        from convoscope.stages.embed import use_worker_pool  # the local stage's rule, which decides the model's threads

        for result in self._run(ctx, "embed_encode", tasks, single_thread=use_worker_pool(ctx, n_rows) > 0):
            vectors.update(result["vectors"])
        dims = len(next(iter(vectors.values()))) if vectors else len(next(iter(cached.values())))
        with ctx.store.array_writer("embeddings", (n_rows, dims), EMBEDDING_DTYPE) as out:
            for r in range(n_rows):
                out[r] = vectors[int(source[r])] if source[r] >= 0 else cached[r]  # every row planned from the cache is in `cached`
            centred = centre_languages(ctx, out)  # the local stage's own step, on the driver
        artifact = "array:embeddings"
        computed = sum(len(g) for g in groups)
        return StageOutput([artifact, *centred], EmbedRecord(model=model, dims=int(dims), computed=computed, reused=int(n_rows - computed)))

    # -- cluster --------------------------------------------------------------------------------

    def _cluster(self, ctx: RunContext) -> StageOutput[Any]:
        """The local stage's k-means (fitted on the same seeded sample, in the driver), with the assignment of
        every row to its nearest centroid spread over Ray workers. Up to the sample size k-means is fitted on
        every row and there is nothing to spread: the local stage runs as it is (so too for an injected
        clusterer and differential privacy)."""
        from convoscope import kmeans
        from convoscope.components import custom_clusterer
        from convoscope.hierarchy_levels import choose_k
        from convoscope.stages.cluster import CLUSTER

        config = ctx.config
        vectors = ctx.store.read_array("embeddings")  # memory-mapped float16
        n = len(vectors)
        k = choose_k(n, config.cluster)
        fit_rows = max(kmeans.FIT_SAMPLE_ROWS, kmeans.FIT_ROWS_PER_CENTROID * k)  # kmeans_on_sample's rule
        if custom_clusterer(ctx) is not None or config.privacy.mode == "dp" or n <= fit_rows:
            return CLUSTER.work(ctx)
        with ctx.console.status(f"k-means: fitting {k} base clusters on {fit_rows:,} of {n:,} conversations"):
            sample = np.sort(np.random.default_rng(config.seed).choice(n, size=fit_rows, replace=False))
            _, centroids = kmeans.kmeans(np.asarray(vectors[sample], dtype=np.float32), k, config.seed, max_steps=kmeans.FIT_STEPS)
        labels = self.assign_to_centroids(ctx, vectors, centroids)
        used, labels = np.unique(labels, return_inverse=True)  # a centroid no row is nearest to is dropped, as locally
        conv_ids = ctx.store.read_table("facets", columns=["conv_id"]).column("conv_id")
        table = pa.table({"conv_id": conv_ids, "cluster": pa.array(labels.reshape(-1), type=pa.int32())})
        artifacts = [ctx.store.write_table("base_assignments", table), ctx.store.write_array("base_centroids", centroids[used])]
        c = config.cluster  # the local stage's wording (tests/test_engine_ray.py compares the records)
        rule = (f"k = conversations / clamp(sqrt(conversations), {c.min_conversations_per_cluster}, {c.conversations_per_cluster}), "
                f"within [{c.min_clusters}, {c.max_clusters}]")
        return StageOutput(artifacts, RayClusterRecord(k=int(k), rule=rule, assigned_blocks=-(-n // kmeans.ASSIGN_BLOCK_ROWS)))

    def assign_to_centroids(self, ctx: RunContext, vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """Each row's nearest centroid (`kmeans.assign_blocks`), as a Ray Data map over blocks of `vectors` of
        `kmeans.ASSIGN_BLOCK_ROWS` rows (the local stage's block, so the same float sums decide every tie)."""
        import ray

        from convoscope import kmeans

        rows = kmeans.ASSIGN_BLOCK_ROWS
        # the blocks go through Ray's object store (spilled to disk when full): workers on other nodes need
        # not see the run directory
        refs = [ray.put(np.ascontiguousarray(vectors[lo:lo + rows])) for lo in range(0, len(vectors), rows)]
        data_context = ray.data.DataContext.get_current()
        data_context.enable_progress_bars = ctx.show_progress
        preserve = data_context.execution_options.preserve_order
        data_context.execution_options.preserve_order = True  # labels come back in row order
        try:
            ds: Any = ray.data.from_numpy_refs(refs)  # type: ignore[arg-type]
            ds = ds.map_batches(CentroidAssigner, fn_constructor_kwargs={"centroids": np.asarray(centroids, dtype=np.float32)},
                                batch_size=rows, batch_format="numpy", zero_copy_batch=True,
                                compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(refs))), num_cpus=1)
            labels = np.concatenate([batch["label"] for batch in ds.iter_batches(batch_size=None, batch_format="numpy")]) \
                if refs else np.empty(0, dtype=np.int64)
        finally:
            data_context.execution_options.preserve_order = preserve
            del refs
        if len(labels) != len(vectors):
            raise ConvoscopeError(f"Ray returned {len(labels):,} centroid assignments for {len(vectors):,} conversations")
        return labels.astype(np.int64)


class CentroidAssigner:
    """A Ray Data actor holding the fitted centroids: the nearest one for each row of a block of embeddings."""

    def __init__(self, centroids: np.ndarray):
        self.centroids = centroids

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from convoscope.kmeans import assign_blocks

        vectors = batch["data"]
        return {"label": assign_blocks(vectors, self.centroids, block=max(1, len(vectors)))}


def _overlaps(piece: dict[str, Any], lo: int, hi: int) -> bool:
    if "texts" in piece:
        start, n = piece["row0"], len(piece["texts"])
    else:
        start, n = piece["shard"]["row0"], piece["shard"]["rows"]
    return start < hi and lo < start + n


def _merge_ingest(ctx: RunContext, files: list[tuple[Path, str]], results: list[dict[str, Any]]) -> tuple[pa.Table, IngestReport, str | None, list[FilePlan]]:
    """The files read on their own, merged as one reader over the whole input would have read them: later
    exact duplicates of an earlier file's conversations dropped, a repeated id invalid, mixed account ids refused."""
    options = ctx.config.ingest
    report = IngestReport()
    content: set[bytes] = set()
    ids: set[str] = set()
    tables: list[pa.Table] = []
    plan: list[FilePlan] = []
    with_account = 0
    worker_key = None
    formats: list[str] = []
    for (path, name), result in zip(files, results):
        if "skipped" in result:
            report.skipped_files.append(result["skipped"])
            continue
        part = result["record"]["report"]
        report.files += 1
        for fmt in (part.get("format") or "").split(","):
            if fmt and fmt not in formats:
                formats.append(fmt)
        report.duplicates += part.get("duplicates", 0)
        for example in part.get("invalid_examples", []):
            report.add_invalid(example)
        report.invalid += part.get("invalid", 0) - len(part.get("invalid_examples", []))
        for key in ("first_with_account", "first_without_account"):
            if getattr(report, key) is None and part.get(key):
                setattr(report, key, part[key])
        worker_key = worker_key or result["key_id"]
        drop: list[int] = []
        for pos, seen in enumerate(result["seen"]):
            if options.dedupe and seen.content in content:
                report.duplicates += 1
                drop.append(pos)
                continue
            content.add(seen.content)
            if seen.id in ids:
                error = InputError(f"duplicate conversation id {seen.id!r} (also in an earlier file)", path=str(path), field="id")
                if not options.skip_invalid:
                    raise InputError(f"duplicate conversation id {seen.id!r} (also in an earlier file); {SKIP_INVALID_HINT}", path=str(path), field="id")
                report.add_invalid(str(error))
                drop.append(pos)
                continue
            ids.add(seen.id)
            report.conversations += 1
            report.messages += seen.messages
            with_account += seen.has_account
            report.without_account += not seen.has_account
            report.without_time += not seen.has_time
        if result["table"] is not None:
            table = result["table"]
            if drop:
                keep = np.ones(table.num_rows, dtype=bool)
                keep[drop] = False
                table = table.filter(pa.array(keep))
            tables.append(table)
        plan.append(FilePlan(str(path), name, len(result["seen"]), tuple(drop)))
    report.format = ",".join(formats) or None
    if not report.files:
        raise InputError(f"no readable file ({'; '.join(report.skipped_files[:3])})", path=str(ctx.input_path))
    if not report.conversations:
        raise InputError("no conversations to analyse", path=str(ctx.input_path))
    check_named_fields(report, options, str(ctx.input_path))  # a mistyped --account-field/--time-field, as the local reader
    table = pa.concat_tables(tables)
    report.accounts = len(set(table.column("account").to_pylist()))
    pooling = options.missing_accounts == "pool"
    if report.without_account == 0:
        report.account_ids = "present"
    elif with_account == 0:
        report.account_ids = "pooled" if pooling else "absent"
    else:
        report.account_ids = "pooled" if pooling else "mixed"
    report.missing_account = report.account_ids == "absent"
    if report.account_ids == "mixed":
        raise mixed_accounts_error(report, options)
    return table, report, worker_key, plan
