"""The per-user secret key: account ids and cache keys are keyed hashes (HMAC-SHA256) with it.

A salt stored next to the hashes it protects protects nothing: anyone holding a run directory could
hash a list of candidate account names and match them. The key therefore lives outside every run and
cache, in one of two places:

1. the environment variable CONVOSCOPE_SECRET_KEY (any string of at least MIN_KEY_CHARS characters,
   e.g. 64 hex digits): how CI and teams on several machines share one key;
2. otherwise a key file, created on first use (64 random hex digits, mode 0600, in a 0700 directory):
   $CONVOSCOPE_SECRET_KEY_FILE, else $XDG_CONFIG_HOME/convoscope/secret.key, else
   ~/.config/convoscope/secret.key.

The file's text and the variable's value are used the same way (stripped of surrounding whitespace),
so `CONVOSCOPE_SECRET_KEY=$(cat ~/.config/convoscope/secret.key)` reproduces the same hashes elsewhere.
Runs record only `key_id()`, a fingerprint from which the key cannot be recovered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

from convoscope.errors import ConfigError
from convoscope.private_files import is_private, make_private_dirs

ENV_KEY = "CONVOSCOPE_SECRET_KEY"
ENV_KEY_FILE = "CONVOSCOPE_SECRET_KEY_FILE"
MIN_KEY_CHARS = 32  # 128 bits as hex; a shorter key could be brute-forced from one known account hash
_NEW_KEY_BYTES = 32
_GENERATE_HINT = "python -c 'import secrets; print(secrets.token_hex(32))'"

# key file path -> ((inode, mtime, size), key): a stat per call instead of a read, yet a replaced
# file (key rotation) is noticed at once
_file_keys: dict[str, tuple[tuple[int, int, int], bytes]] = {}


def key_file_path() -> Path:
    """Where the key file is (or will be created)."""
    if override := os.environ.get(ENV_KEY_FILE):
        return Path(override).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME")
    # the XDG spec: a relative XDG_CONFIG_HOME is invalid and must be ignored
    base = Path(config_home) if config_home and os.path.isabs(config_home) else Path.home() / ".config"
    return base / "convoscope" / "secret.key"


def secret_key() -> bytes:
    """The key: from CONVOSCOPE_SECRET_KEY if set, else from the key file (created if missing)."""
    env_value = os.environ.get(ENV_KEY)
    if env_value is not None:
        return _key_from_text(env_value, source=f"the environment variable {ENV_KEY}")
    path = key_file_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        _create_key_file(path)
        st = path.stat()
    _refuse_if_shared(path, st)  # checked on every call: a cached key does not outlive a chmod
    signature = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _file_keys.get(str(path))
    if cached is not None and cached[0] == signature:
        return cached[1]
    key = _read_key_file(path)
    _file_keys[str(path)] = (signature, key)
    return key


def keyed_hash(key: bytes, purpose: str, data: bytes) -> str:
    """HMAC-SHA256 of `data` as hex; `purpose` separates uses, so one hash never matches another's."""
    return hmac.new(key, purpose.encode() + b"\0" + data, hashlib.sha256).hexdigest()


def key_id(key: bytes | None = None) -> str:
    """A short fingerprint of the key, safe to store in a run: tells runs made with different keys apart."""
    return keyed_hash(secret_key() if key is None else key, "convoscope key id", b"")[:16]


def _key_from_text(text: str, *, source: str) -> bytes:
    value = text.strip()
    if len(value) < MIN_KEY_CHARS:
        raise ConfigError(
            f"the secret key in {source} is too short ({len(value)} characters; at least {MIN_KEY_CHARS} needed). "
            f"Generate one with: {_GENERATE_HINT}"
        )
    return value.encode()


def _refuse_if_shared(path: Path, st: os.stat_result) -> None:
    if os.name == "posix" and not is_private(st.st_mode):
        raise ConfigError(
            f"{path}: the secret key file is readable or writable by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}`, or delete it to create a new key (runs then re-ingest)"
        )


def _read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the secret key file ({e})") from e
    return _key_from_text(text, source=str(path))


def _create_key_file(path: Path) -> None:
    """Create the key file with a fresh random key, complete or not at all.

    The key is written to a private temporary file that is then hard-linked into place: like
    O_CREAT|O_EXCL the link fails if the file exists, so when several processes start at once exactly
    one key wins and the others read it; unlike a plain O_EXCL write, no reader can see a half-written
    file."""
    make_private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".secret.", suffix=".partial", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_hex(_NEW_KEY_BYTES) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use its key
        except OSError:  # a filesystem without hard links: exclusive create, then write
            _create_exclusive(path, Path(tmp).read_text(encoding="utf-8"))
    finally:
        os.unlink(tmp)


def _create_exclusive(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
