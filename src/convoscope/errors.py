"""Errors a user can act on. The CLI prints them as one line and exits non-zero, no traceback."""

from __future__ import annotations


class ConvoscopeError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 1


class InputError(ConvoscopeError):
    """The input cannot be read: unknown format, empty file, bad encoding, malformed record."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None,
                 unit: str = "line"):
        """`line` is a 1-based position counted in `unit`: "line" (JSONL, CSV) is written `path:17`, the way
        editors read it; any other unit ("record" of a JSON array, "row" of a Parquet file) is named:
        `path: record 17`."""
        self.path = path
        self.line = line
        self.field = field
        self.unit = unit
        self.reason = message
        where = ""
        if path is not None:
            if line is None:
                where = str(path)
            else:
                where = f"{path}:{line}" if unit == "line" else f"{path}: {unit} {line}"
        parts = [p for p in (where, f"field '{field}'" if field else "", message) if p]
        super().__init__(": ".join(parts))


class ConfigError(ConvoscopeError):
    """The configuration file or a command-line setting is invalid."""

    exit_code = 2


class LLMFatalError(ConvoscopeError):
    """An LLM error that retrying cannot fix (bad key, unknown model, bad request)."""

    exit_code = 2


class BudgetExceeded(ConvoscopeError):
    """The --max-cost cap would be crossed; finished work is kept."""

    exit_code = 3


class RunDirError(ConvoscopeError):
    """The run directory cannot be used: --out names a file, or a place that cannot be written, or another
    convoscope process holds it."""

    exit_code = 2
