"""What a read saw: counts for the CLI summary and `validate`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5


@dataclass
class IngestReport:
    """Filled while `read_conversations` yields; complete once the generator is exhausted."""

    format: str | None = None  # the format read; several formats are joined with ','
    files: int = 0
    conversations: int = 0  # yielded, after dedupe
    messages: int = 0
    accounts: int = 0  # distinct effective accounts (a conversation without account counts as its own)
    duplicates: int = 0
    invalid: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    missing_account: bool = False  # no record had an account id: each conversation is its own account
    # "present": every conversation has an account id; "absent": none has (the thresholds then count
    # conversations); "pooled": some have none and were counted as one shared account (missing_accounts="pool");
    # "mixed": some have none and the input is refused (a run raises; `validate` reports it). None: no conversation.
    account_ids: str | None = None
    without_account: int = 0  # conversations without an account id
    first_without_account: str | None = None  # where the first one is, e.g. "data.jsonl line 21"
    first_with_account: str | None = None
    account_problem: str | None = None  # why a run would refuse this input (set by `validate`)
    without_time: int = 0
    skipped_files: list[str] = field(default_factory=list)  # directory entries whose content is not a known format
    # Hashes only: counting distinct accounts must not keep every account string in memory.
    _account_hashes: set[int] = field(default_factory=set, repr=False)
    _formats: list[str] = field(default_factory=list, repr=False)
    _with_account: int = field(default=0, repr=False)
    _pooling: bool = field(default=False, repr=False)  # set by the reader from ingest.missing_accounts

    def add_format(self, fmt: str) -> None:
        if fmt not in self._formats:
            self._formats.append(fmt)
            self.format = ",".join(self._formats)

    def add_invalid(self, reason: str) -> None:
        self.invalid += 1
        if len(self.invalid_examples) < MAX_EXAMPLES:
            self.invalid_examples.append(reason)

    def add_conversation(
        self, account: str, has_account: bool, n_messages: int, has_time: bool, where: str | None = None
    ) -> None:
        """Count one yielded conversation; `where` ("file line N") locates the first with and without an id."""
        self.conversations += 1
        self.messages += n_messages
        self._account_hashes.add(hash(account))
        self.accounts = len(self._account_hashes)
        if has_account:
            self._with_account += 1
            if self.first_with_account is None:
                self.first_with_account = where
        else:
            self.without_account += 1
            if self.first_without_account is None:
                self.first_without_account = where
        if not has_time:
            self.without_time += 1
        self.account_ids = self._account_ids()
        self.missing_account = self.account_ids == "absent"

    def _account_ids(self) -> str:
        if self.without_account == 0:
            return "present"
        if self._with_account == 0:
            # Pooling with no id at all puts everything in one account: say so rather than "absent".
            return "pooled" if self._pooling else "absent"
        return "pooled" if self._pooling else "mixed"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
