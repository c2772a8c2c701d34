"""Encryption keys: 32 random bytes in a file only its owner can read."""
import os

from .errors import UsageError
from .fileutil import check_private, read_input, write_atomic

KEY_BYTES = 32


def new_key(path):
    if os.path.lexists(path):
        raise UsageError(f"{path}: already exists (refusing to overwrite a key)")
    write_atomic(path, os.urandom(KEY_BYTES), mode=0o600, what="-o")


def read_key(path, what="--key"):
    key = read_input(path, what, limit=KEY_BYTES, kind=f"{KEY_BYTES}-byte key")
    if len(key) != KEY_BYTES:
        raise UsageError(f"{what}: {path} is not a {KEY_BYTES}-byte key "
                         f"(make one with `suspendos key new -o FILE`)")
    check_private(path, what)
    return key
