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


@pytest.fixture(autouse=True, scope="session")
def _isolated_secret_key(tmp_path_factory):
    """Tests never read or create the user's secret key."""
    names = ("XDG_CONFIG_HOME", "CONVOSCOPE_SECRET_KEY", "CONVOSCOPE_SECRET_KEY_FILE")
    old = {n: os.environ.get(n) for n in names}
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    os.environ.pop("CONVOSCOPE_SECRET_KEY", None)
    os.environ.pop("CONVOSCOPE_SECRET_KEY_FILE", None)
    yield
    for n, v in old.items():
        if v is None:
            os.environ.pop(n, None)
        else:
            os.environ[n] = v
