"""Pieces every record parser shares: field lookup, time parsing, metadata, building the Conversation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from convoscope.model import Conversation

from .options import IngestOptions

ID_FIELDS = ("id", "conversation_id", "uid", "uuid")
ACCOUNT_FIELDS = ("user", "user_id", "account_id")
TIME_FIELDS = ("created_at", "timestamp")
TEXT_FIELDS = ("text", "prompt")
_SCALARS = (str, int, float, bool, type(None))
# Values above this are not plausible Unix seconds (year 5138): read them as milliseconds.
_MS_THRESHOLD = 1e11


class RecordError(Exception):
    """A malformed record; the reader adds file and line and turns it into an InputError."""

    def __init__(self, reason: str, field: str | None = None, *, hint: str | None = None, stops_file: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.hint = hint  # what the user can do; added to the error only when it stops the run
        self.stops_file = stops_file  # the rest of the file cannot be read (its reader ends after this)


@dataclass(slots=True)
class RecordContext:
    options: IngestOptions
    derived_id: str  # used when the record has no id: "<file>:<line>"



SHOWN_CHARS = 24  # a field value in an error message: short enough to be a label, not conversation text


def shown(value: Any) -> str:
    """A field value as an error message may show it: short labels as they are (a role, a timestamp),
    anything longer only by type and length, since a misplaced column can put conversation text there."""
    from convoscope.text import clean_text

    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)
    if isinstance(value, str) and len(value) <= SHOWN_CHARS:
        return repr(clean_text(value))
    size = f" of {len(value):,} characters" if isinstance(value, str) else ""
    return f"a {type(value).__name__}{size} (not shown)"

def pick(rec: dict[str, Any], explicit: str | None, defaults: tuple[str, ...]) -> tuple[str | None, Any]:
    """The (field name, value) to use: the explicit field if given, else the first default present and not null."""
    if explicit is not None:
        return explicit, rec.get(explicit)
    for name in defaults:
        value = rec.get(name)
        if value is not None and value != "":
            return name, value
    return None, None


def as_id(value: Any, field: str | None) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f"expected a string or integer id, got {type(value).__name__}", field)
    return str(value)


def parse_time(value: Any, field: str | None) -> datetime | None:
    """ISO 8601 string or Unix seconds (number or numeric string) -> aware UTC datetime; naive means UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):  # Parquet timestamp columns
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        dt = _from_unix(float(value), value, field)
    elif isinstance(value, str):
        s = value.strip()
        try:
            dt = _from_unix(float(s), value, field)
        except ValueError:
            try:
                dt = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
            except ValueError:
                raise RecordError(f"bad timestamp {shown(value)} (expected ISO 8601 or Unix seconds)", field) from None
    else:
        raise RecordError(f"bad timestamp {shown(value)} (expected ISO 8601 or Unix seconds)", field)
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _from_unix(seconds: float, raw: Any, field: str | None) -> datetime:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise RecordError(f"bad timestamp {shown(raw)}", field)
    if abs(seconds) > _MS_THRESHOLD:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise RecordError(f"bad timestamp {shown(raw)} (out of range)", field) from None


def text_of_parts(parts: list[Any], field: str) -> str:
    """Join the text of a content-part list (strings or {"type": "text", "text": ...}); other parts are skipped."""
    if not parts:
        raise RecordError("empty content list", field)
    texts = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            text = part.get("text")
            if part.get("type", "text") in ("text", "input_text", "output_text") and text is not None:
                if not isinstance(text, str):
                    raise RecordError(f"text part is {type(text).__name__}, expected string", f"{field}[{i}].text")
                texts.append(text)
        else:
            raise RecordError(f"content part is {type(part).__name__}, expected string or object", f"{field}[{i}]")
    return "\n".join(texts)


def message(
    role: str, content: str, name: str | None = None, tool_calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A message as a plain dict: `build` validates the whole conversation in one pydantic call, which is
    faster than constructing each Message (and keeps pydantic as the final check)."""
    msg: dict[str, Any] = {"role": role, "content": content}
    if name is not None:
        msg["name"] = name
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    return msg


def build(
    rec: dict[str, Any],
    ctx: RecordContext,
    messages: list[dict[str, Any]],
    used: set[str] | frozenset[str],
    *,
    account: Any = None,
    created_at: Any = None,
    account_from_record: bool = True,
    time_from_record: bool = True,
) -> Conversation:
    """Resolve id/account/time (options or defaults), collect unknown scalar fields as metadata."""
    opts = ctx.options
    if not messages:
        raise RecordError("conversation has no messages", "messages")
    id_name, id_value = pick(rec, opts.id_field, ID_FIELDS)
    conv_id = as_id(id_value, id_name) or ctx.derived_id
    account_name = None
    if account_from_record:
        account_name, account = pick(rec, opts.account_field, ACCOUNT_FIELDS)
    time_name = None
    if time_from_record:
        time_name, created_at = pick(rec, opts.time_field, TIME_FIELDS)
    skip = {id_name, account_name, time_name, "metadata", *used}
    metadata: dict[str, Any] = {}
    extra = rec.get("metadata")
    if isinstance(extra, dict):
        metadata.update(extra)
    elif extra is not None and isinstance(extra, _SCALARS):  # a plain value (a CSV column "metadata"): a field like any other
        metadata["metadata"] = extra
    for key, value in rec.items():
        if key not in skip and isinstance(value, _SCALARS):
            metadata[key] = value
    data = {
        "id": conv_id,
        "account_id": as_id(account, account_name or "account"),
        "created_at": parse_time(created_at, time_name or "created_at"),
        "messages": messages,
        "metadata": metadata,
    }
    try:
        return Conversation.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise RecordError(first["msg"], _loc(first["loc"])) from None


def _loc(loc: tuple[Any, ...]) -> str:
    """("messages", 2, "content") -> "messages[2].content", the notation the parsers use."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def require_list(rec: dict[str, Any], field: str) -> list[Any]:
    value = rec.get(field)
    if value is None:
        raise RecordError("missing", field)
    if not isinstance(value, list):
        raise RecordError(f"expected a list, got {type(value).__name__}", field)
    if not value:
        raise RecordError("conversation has no messages", field)
    return value


def require_str(obj: dict[str, Any], key: str, field: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RecordError("missing" if value is None else f"expected a string, got {type(value).__name__}", field)
    return value
