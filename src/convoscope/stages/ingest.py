"""Stage 1: read the input once, validate it, and store per-conversation statistics (no raw text)."""

from __future__ import annotations

import time

import orjson
import pyarrow as pa

from convoscope.context import RunContext
from convoscope.ingest import IngestReport
from convoscope.store import fingerprint

STAGE = "ingest"


def input_fingerprint(ctx: RunContext) -> str:
    """Size and mtime of every input file: cheap, and changes whenever the input does."""
    path = ctx.input_path
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return fingerprint([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def _scalar_metadata(meta: dict) -> str:
    return orjson.dumps({k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}).decode()


def run_ingest(ctx: RunContext) -> str:
    fp = fingerprint(STAGE, input_fingerprint(ctx), ctx.config.ingest.model_dump())
    if ctx.store.stage_complete(STAGE, fp):
        return fp
    started = time.perf_counter()
    salt = ctx.account_salt()
    report = IngestReport()
    cols: dict[str, list] = {k: [] for k in ("conv_id", "account", "created_at", "n_messages", "n_turns", "user_chars", "assistant_chars", "metadata")}
    with ctx.progress() as progress:
        task = progress.add_task("Reading conversations", total=None)
        for conv in ctx.iter_input(report):
            cols["conv_id"].append(conv.id)
            cols["account"].append(ctx.hash_account(conv.effective_account, salt))
            cols["created_at"].append(conv.created_at)
            cols["n_messages"].append(len(conv.messages))
            cols["n_turns"].append(sum(1 for m in conv.messages if m.role == "user"))
            cols["user_chars"].append(sum(len(m.content) for m in conv.messages if m.role == "user"))
            cols["assistant_chars"].append(sum(len(m.content) for m in conv.messages if m.role == "assistant"))
            cols["metadata"].append(_scalar_metadata(conv.metadata))
            progress.advance(task)
    if not cols["conv_id"]:
        from convoscope.errors import InputError

        raise InputError("no conversations to analyse", path=str(ctx.input_path))
    schema = pa.schema(
        [
            ("conv_id", pa.string()),
            ("account", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("n_messages", pa.int32()),
            ("n_turns", pa.int32()),
            ("user_chars", pa.int32()),
            ("assistant_chars", pa.int32()),
            ("metadata", pa.string()),
        ]
    )
    table = pa.table(cols, schema=schema)
    artifact = ctx.store.write_table("conversations", table)
    ingest_report = report.to_dict()
    if report.missing_account:
        ctx.console.print(
            "[yellow]warning:[/] the input has no account ids; each conversation counts as its own account for the privacy thresholds"
        )
    if report.invalid:
        ctx.console.print(f"[yellow]warning:[/] skipped {report.invalid} invalid records, e.g. {report.invalid_examples[:3]}")
    ctx.store.mark_complete(STAGE, fp, [artifact], seconds=time.perf_counter() - started, report=ingest_report)
    return fp
