"""What every stage receives: the configuration, the run store, the input and the shared services."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from convoscope.components import Components
from convoscope.config import Config
from convoscope.ingest import IngestReport, MemorySource, read_conversations
from convoscope.model import Conversation
from convoscope.secrets_key import keyed_hash, secret_key
from convoscope.store import RunStore


@dataclass
class RunContext:
    config: Config
    store: RunStore
    input_path: Path  # or an ingest.files.RemoteFile for s3:// and other pyarrow filesystems (same interface for ingest)
    console: Console = field(default_factory=lambda: Console(stderr=True))
    show_progress: bool = True
    llm: Any = None  # convoscope.llm client, built by the pipeline in LLM mode
    facet: str | None = None  # the open-text facet this context clusters; None: the primary one
    components: Components | None = None  # injected embedder / clusterer / reducer; None: ours
    memory: MemorySource | None = None  # conversations given in memory (the Python API); input_path is then its label
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def hierarchy_facet(self) -> str:
        return self.facet or self.config.facets.hierarchy_facets[0]

    def for_facet(self, facet: str, store: RunStore) -> "RunContext":
        """A context for one more facet's hierarchy: its own store, the same LLM client and event loop
        (close() only the original)."""
        if self.llm is not None and self._loop is None:
            self._loop = asyncio.new_event_loop()
        return dataclasses.replace(self, store=store, facet=facet)

    def progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.show_progress,
            transient=False,
        )

    def iter_input(self, report: IngestReport | None = None) -> Iterator[Conversation]:
        """Re-read the input (raw text is never copied into the run directory)."""
        if self.memory is not None:
            return self.memory.read(self.config.ingest, report)
        return read_conversations(self.input_path, self.config.ingest, report)

    def complete_many(self, requests: list, description: str = "", *, show_progress: bool = True) -> list:
        """Run LLM requests on the context's one event loop (the HTTP client is bound to a loop).
        `show_progress=False` inside a stage's own progress bar: one live display at a time."""
        if self.llm is None:
            from convoscope.errors import ConfigError

            raise ConfigError("this step needs an LLM; pass --llm SPEC (e.g. anthropic:claude-3-5-haiku-latest)")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if getattr(self.llm, "run_dir", False) is None:
            self.llm.run_dir = self.store.root  # batch mode keeps its batch ids here, so a rerun resumes them
        return self._loop.run_until_complete(self.llm.complete_many(requests, description=description, show_progress=show_progress))

    def close(self) -> None:
        if self._loop is not None:
            if self.llm is not None:
                self._loop.run_until_complete(self.llm.aclose())
            self._loop.close()
            self._loop = None

    def account_key(self) -> bytes:
        """The per-user secret key account ids are hashed with. It is never written to the run
        directory (a salt stored next to the hashes lets anyone reverse them with a list of names)."""
        return secret_key()

    @staticmethod
    def hash_account(account: str, key: bytes) -> str:
        return keyed_hash(key, "convoscope account", account.encode())[:24]
