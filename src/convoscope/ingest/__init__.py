"""Streaming readers for every supported chat format, with format detection.

    for conv in read_conversations("data/", IngestOptions(), report): ...
    for conv in MemorySource.from_data(records_or_dataframe).read(IngestOptions(), report): ...  # in memory
"""

from .memory import MemorySource
from .options import FORMATS, IngestOptions
from .reader import read_conversations, validate_input
from .report import IngestReport

__all__ = ["FORMATS", "IngestOptions", "IngestReport", "MemorySource", "read_conversations", "validate_input"]
