import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from fakes import ...`


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's cache directory."""
    old = os.environ.get("CONVOSCOPE_CACHE_DIR")
    os.environ["CONVOSCOPE_CACHE_DIR"] = str(tmp_path_factory.mktemp("convoscope-cache"))
    yield
    if old is None:
        os.environ.pop("CONVOSCOPE_CACHE_DIR", None)
    else:
        os.environ["CONVOSCOPE_CACHE_DIR"] = old
