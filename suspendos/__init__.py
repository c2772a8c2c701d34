"""suspendos: build a freestanding suspend module that writes a machine's memory to disk."""

__version__ = "0.1.0"
