"""Encryption keys: 32 random bytes in a file only its owner can read."""
import os

from .errors import UsageError
from .fileutil import write_atomic

KEY_BYTES = 32


def new_key(path):
    if os.path.exists(path):
        raise UsageError(f"{path}: already exists (refusing to overwrite a key)")
    write_atomic(path, os.urandom(KEY_BYTES), mode=0o600)


def read_key(path, what="--key"):
    try:
        with open(path, "rb") as f:
            key = f.read(KEY_BYTES + 1)
    except OSError as e:
        raise UsageError(f"{what}: cannot read {path} ({e.strerror})")
    if len(key) != KEY_BYTES:
        raise UsageError(f"{what}: {path} is not a {KEY_BYTES}-byte key "
                         f"(make one with `suspendos key new -o FILE`)")
    return key
