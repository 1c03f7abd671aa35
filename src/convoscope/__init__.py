"""convoscope: privacy-preserving insights into real-world AI use (an open Clio)."""

__version__ = "0.1.0"
