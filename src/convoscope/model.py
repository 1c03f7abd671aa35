"""The conversation data model every reader produces and every stage consumes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

Role = Literal["system", "user", "assistant", "tool"]
# The one account every conversation without an account id counts as, when ingest.missing_accounts = "pool".
POOLED_ACCOUNT = "pooled:missing-account"


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    arguments: Any = None


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] | None = None


class Conversation(BaseModel):
    """One conversation. `account_id` is None when the input has none (then each conversation counts as
    its own account for the privacy thresholds)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    account_id: str | None = None
    created_at: datetime | None = None
    messages: list[Message] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    _account_pooled: bool = PrivateAttr(default=False)

    @field_validator("id")
    @classmethod
    def _id_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("conversation id is empty")
        return v

    def user_text(self, sep: str = "\n") -> str:
        return sep.join(m.content for m in self.messages if m.role == "user")

    def first_user_message(self) -> str:
        for m in self.messages:
            if m.role == "user":
                return m.content
        return ""

    def content_hash(self) -> str:
        """Hash of the messages only: two conversations with equal hashes are exact duplicates."""
        payload = orjson.dumps([(m.role, m.content, m.name) for m in self.messages])
        return hashlib.blake2b(payload, digest_size=16).hexdigest()

    def pool_missing_account(self) -> None:
        """Count this conversation, which has no account id, in the one shared POOLED_ACCOUNT
        (ingest.missing_accounts = "pool"): the conservative choice for the privacy thresholds."""
        self._account_pooled = True

    @property
    def effective_account(self) -> str:
        """The account the privacy thresholds count: the account id; else the shared pool when pooling;
        else the conversation itself (only for input with no account ids at all: mixed input is refused)."""
        if self.account_id is not None:
            return self.account_id
        return POOLED_ACCOUNT if self._account_pooled else f"conversation:{self.id}"
