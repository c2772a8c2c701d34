"""Phrases the command line's help strings share, so every option that takes a size, a
compression, a key or a JSON switch says it the same way (argparse %-formats help strings:
a literal percent sign is written %%)."""


def one_of(values):
    """('none', 'lz4', 'lz4hc') -> 'none, lz4 or lz4hc'."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


SIZE = "bytes, or a number with a K, M, G or T suffix (powers of 1024)"
# suspendos.target.qemu.check_memory: the test machine's range (its module is not imported
# here: it pulls in asyncio, and every command builds the parser).
QEMU_MEMORY = "guest RAM: a size with a K, M or G suffix, a whole number of MiB, 64M to 8G"
JSON = "print the result as one JSON object instead of text"
QUIET = "no progress on stderr"
KEY = "key file of an encrypted image: 32 bytes (suspendos key new)"
ENCRYPT_KEY = ("encrypt every chunk of the image (ChaCha20-Poly1305) with this key file: "
               "32 bytes (suspendos key new)")
APIC_ID = "an APIC id (QEMU numbers -smp N CPUs 0 to N-1; 0 is the boot CPU)"


def compress(default):
    from .target.description import COMPRESSIONS
    said = f"default {default}" if default else "default: the target's"
    return f"how the image's pages are compressed: {one_of(COMPRESSIONS)} ({said})"
