"""Streaming readers for every supported chat format, with format detection.

    for conv in read_conversations("data/", IngestOptions(), report): ...
"""

from .options import FORMATS, IngestOptions
from .reader import read_conversations, validate_input
from .report import IngestReport

__all__ = ["FORMATS", "IngestOptions", "IngestReport", "read_conversations", "validate_input"]
