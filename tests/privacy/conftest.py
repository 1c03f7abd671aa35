import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_secret_key(tmp_path_factory):
    """Tests never read or create the user's secret key (~/.config/convoscope/secret.key): the key
    file lives in a temporary config directory and no key comes from the environment. Session-scoped
    and set through os.environ, so module-scoped fixtures that run a pipeline see it too."""
    names = ("XDG_CONFIG_HOME", "CONVOSCOPE_SECRET_KEY", "CONVOSCOPE_SECRET_KEY_FILE")
    old = {name: os.environ.get(name) for name in names}
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    os.environ.pop("CONVOSCOPE_SECRET_KEY", None)
    os.environ.pop("CONVOSCOPE_SECRET_KEY_FILE", None)
    yield
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
