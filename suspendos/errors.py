"""The project's own exceptions. Every user-facing failure is one of these, so the CLI can
print one line and exit with a code that says what kind of failure it was."""


class SuspendosError(Exception):
    """Base class: a failure the user can act on. str() is the one-line message."""

    exit_code = 1


class UsageError(SuspendosError):
    """Bad input: a malformed file, a bad option value, an impossible target (exit 2)."""

    exit_code = 2


class FormatError(UsageError):
    """A binary structure (blob, image, plugin package) failed to parse or verify."""


class BuildError(SuspendosError):
    """The toolchain failed while building a payload or test host."""


class RunError(SuspendosError):
    """A QEMU run failed; the message carries what the user needs to reproduce it."""
