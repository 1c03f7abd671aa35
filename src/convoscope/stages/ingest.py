"""Stage 1: read the input once, validate it, and store per-conversation statistics (no raw text)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from convoscope.context import RunContext
from convoscope.ingest import IngestReport
from convoscope.secrets_key import key_id
from convoscope.stage_runner import Stage, StageOutput, StageRecord, run_stage
from convoscope.text import markup_safe
from convoscope.store import fingerprint


@dataclass(frozen=True)
class IngestRecord(StageRecord):
    report: dict[str, Any]  # IngestReport.to_dict(): counts, account ids, invalid records
    raw_text_stored: bool


def input_fingerprint(ctx: RunContext) -> str:
    """Size and mtime of every input file: cheap, and changes whenever the input does (records in memory:
    a hash of their content, computed once)."""
    if ctx.memory is not None:
        return ctx.memory.fingerprint
    from convoscope.ingest.files import file_stats

    return fingerprint(file_stats(ctx.input_path))  # local files or the objects under a remote prefix


def _scalar_metadata(meta: dict) -> str:
    return orjson.dumps({k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}).decode()


def _settings(ctx: RunContext) -> tuple:
    # the key's id is part of the fingerprint: a new key re-ingests rather than mixing two hash schemes
    return ctx.config.ingest.model_dump(), ctx.config.privacy.include_raw_text, key_id(ctx.account_key())


def _ingest(ctx: RunContext) -> StageOutput[IngestRecord]:
    account_key = ctx.account_key()
    report = IngestReport()
    cols: dict[str, list] = {k: [] for k in ("conv_id", "account", "created_at", "n_messages", "n_turns", "user_chars", "assistant_chars", "metadata")}
    keep_raw = ctx.config.privacy.include_raw_text  # only on explicit request; never read by the explorer
    raw_text: list[str] = []
    with ctx.progress() as progress:
        task = progress.add_task("Reading conversations", total=None)
        for count, conv in enumerate(ctx.iter_input(report), start=1):
            cols["conv_id"].append(conv.id)
            cols["account"].append(ctx.hash_account(conv.effective_account, account_key))
            cols["created_at"].append(conv.created_at)
            cols["n_messages"].append(len(conv.messages))
            cols["n_turns"].append(sum(1 for m in conv.messages if m.role == "user"))
            cols["user_chars"].append(sum(len(m.content) for m in conv.messages if m.role == "user"))
            cols["assistant_chars"].append(sum(len(m.content) for m in conv.messages if m.role == "assistant"))
            cols["metadata"].append(_scalar_metadata(conv.metadata))
            if keep_raw:
                raw_text.append("\n\n".join(f"{m.role}: {m.content}" for m in conv.messages))
            if count % 1000 == 0:  # the display takes a lock per update: not once per conversation
                progress.update(task, completed=count)
        progress.update(task, completed=len(cols["conv_id"]))
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
    artifacts = [ctx.store.write_table("conversations", table)]
    if keep_raw:
        artifacts.append(ctx.store.write_table("raw_text", pa.table({"conv_id": cols["conv_id"], "text": raw_text})))
        ctx.console.print("[yellow]note:[/] raw conversation text is stored in the run directory (privacy.include_raw_text); treat the directory as sensitive")
    ingest_report = report.to_dict()
    warn_about_accounts(ctx, report)
    if report.invalid:
        ctx.console.print(f"[yellow]warning:[/] skipped {report.invalid} invalid records, e.g. {markup_safe(str(report.invalid_examples[:3]))}")
    # the key's id, never the key; runs from before the key kept a salt here, which made hashes reversible
    ctx.store.update_manifest(account_key_id=key_id(account_key))
    ctx.store.remove_manifest_fields("account_salt")
    return StageOutput(artifacts, IngestRecord(report=ingest_report, raw_text_stored=keep_raw))


# the first stage: its upstream is the input itself (input_fingerprint)
INGEST = Stage("ingest", _settings, _ingest)


def run_ingest(ctx: RunContext) -> str:
    return run_stage(INGEST, ctx, input_fingerprint(ctx))


def warn_about_accounts(ctx: RunContext, report: IngestReport) -> None:
    """Say plainly what the privacy thresholds count (report["account_ids"] keeps it for later stages)."""
    if report.account_ids == "absent":
        ctx.console.print(
            "[yellow]warning:[/] the input has no account ids; each conversation counts as its own account for the privacy thresholds"
        )
    elif report.account_ids == "pooled":
        everything = " (all of them: nothing can pass the account threshold)" if report.without_account == report.conversations else ""
        ctx.console.print(
            f"[yellow]note:[/] {report.without_account:,} conversations without an account id count as one shared account{everything}"
        )
