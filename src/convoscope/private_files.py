"""Files only their owner can read: run directories, caches and the secret key hold per-conversation
data or what protects it. Modes are set per directory and per file as we create them, never through
the process-wide umask (a library must not change its caller's umask)."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents 0700. Directories that already exist (the user's
    own, or a run being resumed) keep their mode: we only tighten what we create."""
    missing = []
    d = Path(directory)
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # created concurrently by someone else: not ours to chmod
        os.chmod(d, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask


def is_private(mode: int) -> bool:
    """No permission bits for group or others."""
    return not mode & 0o077
