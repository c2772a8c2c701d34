"""Signing keys for plugin packages: ed25519 (RFC 8032) through the cryptography package.

KEY is the private key, PEM (PKCS#8), readable by its owner only; KEY.pub the public key in
OpenSSH's one-line format ("ssh-ed25519 AAAA... comment"), which is what a trust folder holds:
every *.pub file in it is a trusted key. Keys are named by their OpenSSH-style fingerprint
(SHA256 of the key blob, base64), the same string `ssh-keygen -lf KEY.pub` prints.
"""
import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import UsageError
from ..fileutil import check_output, check_private, read_input, show, write_atomic

DEFAULT_TRUST_DIR = "/etc/suspendos/trusted-keys"
MAX_KEY_FILE = 64 * 1024        # a PEM or OpenSSH ed25519 key is a few hundred bytes


def keygen(path, comment="suspendos-plugin-key"):
    """Write a new private key to `path` (0600) and its public key to `path`.pub."""
    path = Path(path)
    pub = Path(str(path) + ".pub")
    for p in (path, pub):
        check_output(p, "-o")
        if os.path.lexists(p):
            raise UsageError(f"{p}: already exists (refusing to overwrite a key)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH)
    write_atomic(path, pem, mode=0o600, what="-o")
    try:
        write_atomic(pub, line + b" " + comment.encode() + b"\n", mode=0o644, what="-o")
    except BaseException:
        path.unlink()           # a private key without its .pub would block a rerun
        raise
    return key.public_key()


def load_private_key(path, what="--key"):
    """An ed25519 private key: PEM (what `plugin keygen` writes) or OpenSSH's own format
    (what `ssh-keygen -t ed25519` writes), unencrypted."""
    data = read_input(path, what, limit=MAX_KEY_FILE, kind="key file")
    openssh = data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    try:
        if openssh:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        kind = "an unencrypted OpenSSH" if openssh else "an unencrypted PEM"
        raise UsageError(f"{what}: {show(path)} is not {kind} private key ({_one_line(e)})")
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{what}: {show(path)} is not an ed25519 key "
                         f"(make one with `suspendos plugin keygen -o FILE`)")
    check_private(path, what)
    return key


def _one_line(e):
    """A library's exception text, which may span lines, as part of one line."""
    return " ".join(str(e).split())


def raw_public(key):
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(raw):
    """OpenSSH's SHA256 fingerprint of a raw ed25519 public key."""
    name = b"ssh-ed25519"
    blob = len(name).to_bytes(4, "big") + name + len(raw).to_bytes(4, "big") + raw
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def load_public_key(path):
    """A raw 32-byte ed25519 public key from an OpenSSH .pub file."""
    data = read_input(path, limit=MAX_KEY_FILE, kind="key file")
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except (ValueError, TypeError, IndexError) as e:
        raise UsageError(f"{show(path)}: not an OpenSSH public key ({_one_line(e)})")
    except UnsupportedAlgorithm:
        raise UsageError(f"{show(path)}: not an ed25519 public key")
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{show(path)}: not an ed25519 public key")
    return raw_public(key)


def trusted_keys(trust_dir):
    """{raw public key: file} for every *.pub in `trust_dir`."""
    d = Path(trust_dir)
    if not d.is_dir():
        raise UsageError(f"--trust: {show(d)} is not a folder of trusted public keys (*.pub)")
    keys = {}
    for p in sorted(d.glob("*.pub")):
        keys.setdefault(load_public_key(p), p)
    return keys


def sign(private_key, message):
    return private_key.sign(message)


def signature_valid(raw_public_key, signature, message):
    try:
        Ed25519PublicKey.from_public_bytes(raw_public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False
