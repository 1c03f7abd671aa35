"""Ingest settings, also loaded from the `[ingest]` table of the TOML config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str | None) -> str | None:
        if v is not None and v not in FORMATS:
            raise ValueError(f"unknown format {v!r}; expected one of {', '.join(FORMATS)}")
        return v
