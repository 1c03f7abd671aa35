"""Errors a user can act on. The CLI prints them as one line and exits non-zero, no traceback."""

from __future__ import annotations


class ConvoscopeError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 1


class InputError(ConvoscopeError):
    """The input cannot be read: unknown format, empty file, bad encoding, malformed record."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        self.path = path
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}" if line is not None else str(path)
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
