"""Ingest settings, also loaded from the `[ingest]` table of the TOML config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# 8 MiB: a record this large is ~2 million words, far beyond any real conversation (and any model's context),
# while memory stays bounded because the readers never hold more than one record of this size.
DEFAULT_MAX_RECORD_BYTES = 8 << 20
# 16 GiB per compressed file: several million average conversations, beyond what one run analyses, yet a
# bomb (gzip reaches ~1000:1) is stopped after a bounded amount of streamed work (memory never grows with it).
DEFAULT_MAX_DECOMPRESSED_BYTES = 16 << 30

FORMATS = ("openai", "sharegpt", "hh", "claude_export", "chatgpt_export", "csv", "parquet", "prompt")


class IngestOptions(BaseModel):
    """How to read conversations from files; every field has a default that fits the common formats."""

    model_config = ConfigDict(extra="forbid")

    format: str | None = Field(
        None, description=f"Input format, one of {', '.join(FORMATS)}; None detects it from each file's content."
    )
    account_field: str | None = Field(
        None, description="Field holding the account (user) id; default: the first of user, user_id, account_id present."
    )
    time_field: str | None = Field(
        None, description="Field holding the conversation time (ISO 8601 or Unix seconds); default: created_at, timestamp."
    )
    id_field: str | None = Field(
        None,
        description="Field holding the conversation id; default: id, conversation_id, uid, uuid, "
        "else an id derived from file name and line (e.g. 'data.jsonl:17').",
    )
    text_field: str | None = Field(
        None, description="Single-prompt data: field holding the prompt text; default: text, prompt."
    )
    table_layout: Literal["auto", "message", "conversation"] = Field(
        "auto",
        description="CSV/Parquet: 'message' = one row per message (grouped by conversation_column), "
        "'conversation' = one row per conversation (a text/prompt column or a JSON 'messages' column), "
        "'auto' = decide from the columns present.",
    )
    conversation_column: str = Field("conversation_id", description="Message-per-row tables: conversation id column.")
    role_column: str = Field("role", description="Message-per-row tables: message role column.")
    content_column: str = Field("content", description="Message-per-row tables: message text column.")
    order_column: str | None = Field(
        None, description="Message-per-row tables: column to order messages by within a conversation; default: file order."
    )
    skip_invalid: bool = Field(
        False, description="Skip malformed records (counted in the report) instead of stopping at the first one."
    )
    dedupe: bool = Field(True, description="Drop exact duplicate conversations (same messages).")
    missing_accounts: Literal["error", "pool"] = Field(
        "error",
        description="Input where some conversations have an account id and some do not: 'error' refuses it "
        "(each conversation without an id would count as its own account and could pass the privacy thresholds "
        "alone); 'pool' counts all conversations without an id as ONE shared account. Input with no account "
        "ids at all is accepted under 'error', each conversation counting as its own account.",
    )
    max_record_bytes: int = Field(
        DEFAULT_MAX_RECORD_BYTES, ge=0,
        description="Largest record read (a JSONL line, a JSON array element, a CSV row, a Parquet row); a larger "
        "one is an invalid record (skipped and counted with skip_invalid). 0 = no limit.",
    )
    max_decompressed_bytes: int = Field(
        DEFAULT_MAX_DECOMPRESSED_BYTES, ge=0,
        description="Most bytes one compressed file (.gz) may expand to, or one Parquet file's uncompressed "
        "size: protects against decompression bombs. 0 = no limit.",
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str | None) -> str | None:
        if v is not None and v not in FORMATS:
            raise ValueError(f"unknown format {v!r}; expected one of {', '.join(FORMATS)}")
        return v
