"""Every file the tool reads or writes for the user goes through here, so bad paths are
refused in one place, with one line naming the option and the problem:

- outputs are written to a fresh temporary file beside the target and renamed over it at the
  end, so a failure never leaves a half-written file and never deletes anyone's file; only a
  regular file is ever replaced (a device node, FIFO or socket is refused, never swapped for a
  regular file); a symbolic link is followed and its target replaced;
- inputs are opened without blocking (a FIFO with no writer would hang), must be regular
  files (or block devices where a disk is meant), and are read up to a limit;
- an output that is also an input is refused before anything is read or written.
"""
import contextlib
import errno
import fcntl
import os
import stat
import sys
import tempfile

from .errors import SuspendosError, UsageError

MiB = 1 << 20


def show(path):
    """A path (or any text read from a user's file) as messages name it: quoted when it
    holds what would break the one line or the terminal (a newline, a control character, an
    ANSI escape) or nothing at all. Bytes that are not UTF-8 (a file name the OS handed us
    with surrogateescape) appear as \\xNN: a lone surrogate is what print() cannot encode."""
    p = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if p and p.isprintable():
        return p
    try:
        p.encode("utf-8")
    except UnicodeEncodeError:
        return repr(p.encode("utf-8", "surrogateescape" if _only_escaped(p)
                             else "backslashreplace"))[1:]      # b'...' without the b
    return repr(p)


def _only_escaped(p):
    return all(0xDC80 <= ord(c) <= 0xDCFF for c in p if 0xD800 <= ord(c) <= 0xDFFF)


def _label(what, path):
    return f"{what}: {show(path)}" if what else show(path)


# ---- outputs ------------------------------------------------------------------------------
def check_output(path, what=None):
    """Refuse an output path that cannot be written as a regular file; returns the path to
    replace (a symbolic link's target). Touches nothing."""
    label = _label(what, path)
    p = os.fspath(path)
    if not p:
        raise UsageError(f"{what or 'output'}: an empty file name")
    if "\0" in p:
        raise UsageError(f"{label}: a file name cannot hold a NUL byte")
    real = os.path.realpath(p)
    try:
        # The path itself, not `real`: /dev/stdout is a /proc/self/fd link whose target a
        # pipe or socket names as "pipe:[123]", a file that does not exist; stat() follows
        # the link to the pipe itself. A dangling link fails here and is judged by `real`.
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:        # that one is named below
            raise UsageError(f"{label}: {e.strerror}")
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{label}: is a folder (give a file name)")
    if p.endswith(os.sep) or os.path.basename(p) in (".", ".."):
        # "newdir/" names a folder; realpath() drops the slash, and the file "newdir" it
        # would then write is not what the user named.
        raise UsageError(f"{label}: names a folder, and no folder of that name exists "
                         f"(give a file name)")
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{label}: not a regular file (a device, FIFO or socket is "
                             f"never replaced)")
        check_not_read_only(st, label)
    folder = os.path.dirname(real)
    named = folder if os.path.islink(p) else (os.path.dirname(p) or ".")
    if not os.path.isdir(folder):
        if os.path.exists(folder):      # a file, FIFO or device where the folder would be
            raise UsageError(f"{label}: {show(named)} is not a folder")
        raise UsageError(f"{label}: the folder {show(named)} does not exist")
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(os.path.basename(real))) > name_max:
        raise UsageError(f"{what or 'output'}: the file name is longer than {name_max} bytes")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{label}: cannot write in {show(named)} "
                         f"(permission denied)")
    return real


def check_not_read_only(st, label, to="replace"):
    """Refuse a regular file whose mode has no write bit: root may write anything, but the
    mode says its owner's intent. `st`: its os.stat() result."""
    if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222:
        raise UsageError(f"{label}: the file is read-only (make it writable to {to} it, or "
                         f"give another name)")


def check_writable_in_place(path, what=None):
    """Refuse an existing file a command writes into in place (a --disk, a swap AREA) when
    it is read-only, by the rule check_output applies to the files it replaces. A block
    device, or a name that does not exist yet, is left to the command."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return
    check_not_read_only(st, _label(what, path), to="write into")


@contextlib.contextmanager
def atomic_output(path, mode=0o644, what=None):
    """`with atomic_output(p) as f:` writes a binary file that appears at `p`, with `mode`,
    only when the block ends without an exception."""
    real = check_output(path, what)
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(real), prefix=".sos-",
                                   suffix=".partial")
    except OSError as e:
        raise UsageError(f"{_label(what, path)}: cannot create a file there ({e.strerror})")
    try:
        os.fchmod(fd, mode)         # before any byte: a secret is never readable by others
        with os.fdopen(fd, "w+b") as f:
            yield f
        os.replace(tmp, real)
    except OSError as e:
        _unlink(tmp)
        if isinstance(e, BrokenPipeError):
            raise
        raise SuspendosError(f"{_label(what, path)}: cannot write ({e.strerror})") from e
    except BaseException:
        _unlink(tmp)
        raise


def write_atomic(path, data, mode=0o644, what=None):
    with atomic_output(path, mode, what) as f:
        f.write(data)


def _unlink(p):
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


# ---- inputs -------------------------------------------------------------------------------
def open_input(path, what=None, block_device=False):
    """A binary file object for reading `path`: a regular file (or, with `block_device`, a
    block device). Opened non-blocking so a FIFO cannot hang us, then checked."""
    label = _label(what, path)
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as e:
        raise UsageError(f"{label}: cannot read ({getattr(e, 'strerror', None) or e})")
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UsageError(f"{label}: is a folder, not a file")
        if not (stat.S_ISREG(mode) or (block_device and stat.S_ISBLK(mode))):
            kind = "or a block device " if block_device else ""
            raise UsageError(f"{label}: not a regular file {kind}(a pipe, FIFO or device "
                             f"cannot be read here: save it to a file first)")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path, what=None, limit=16 * MiB, kind="file"):
    """The bytes of a regular file of at most `limit` bytes."""
    with open_input(path, what) as f:
        # A file's size is known before a byte is read: a 100 GiB file is refused at once.
        if os.fstat(f.fileno()).st_size > limit:
            raise UsageError(f"{_label(what, path)}: larger than {limit} bytes: not a {kind}")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise UsageError(f"{_label(what, path)}: cannot read ({e.strerror})")
    if len(data) > limit:
        raise UsageError(f"{_label(what, path)}: larger than {limit} bytes: not a {kind}")
    return data


def input_size(f):
    """The size of an open regular file or block device, in bytes."""
    return os.lseek(f.fileno(), 0, os.SEEK_END)


def check_private(path, what=None):
    """Warn (stderr) when a private key file can be read by others than its owner."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & 0o077:
        print(f"suspendos: warning: {_label(what, path)} can be read by others (mode "
              f"{stat.S_IMODE(mode):04o}): chmod 600 {show(path)}", file=sys.stderr)


# ---- inputs against outputs ---------------------------------------------------------------
def _identity(path):
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_distinct(inputs, outputs):
    """Refuse an output that is one of the inputs, or two outputs that are one file.
    inputs, outputs: [(option, path)]."""
    seen = []
    for opt, path in outputs:
        ident = _identity(path)
        real = os.path.realpath(path)
        for other_opt, other in seen:
            if os.path.realpath(other) == real or (ident and _identity(other) == ident):
                raise UsageError(f"{opt}: {show(path)} is also {other_opt}: give two different "
                                 f"files")
        for in_opt, in_path in inputs:
            if ident and _identity(in_path) == ident:
                raise UsageError(f"{opt}: {show(path)} is the input {in_opt}: refusing to "
                                 f"overwrite it")
        seen.append((opt, path))
