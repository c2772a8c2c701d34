"""The main job: build a payload for the QEMU test machine, hibernate the machine to a disk
image, check the image against QEMU's own memory dump, power off, resume the machine from the
image, and say in plain words what happened.

usage: suspendos demo [--memory 512M] [--compress lz4|none] [--seed N] [--keep DIR]
(`./run demo` in a checkout; installed, `suspendos demo` from any folder)

Every argument is checked before anything is made. The demo never deletes or replaces a file
it did not make in this run: `--keep DIR` is refused when DIR already holds a disk.img or
ram.bin. Its work folder (a temporary one, or what it made in DIR) is removed when it is
interrupted (Ctrl-C, SIGTERM, SIGHUP, a closed output pipe); each step is a `suspendos`
process of its own, which is given the same signal and time to stop its QEMU.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .argparser import Parser, bounded_int
from .errors import UsageError
from .interrupt import Terminated

OUTPUTS = ("disk.img", "ram.bin")
CHILD_GRACE = 10.0      # seconds a step gets to stop its QEMU after the signal reached it


def _stop_child(child, forward):
    """Wait for an interrupted step to finish its own teardown. `forward`: send it SIGTERM
    first (Ctrl-C reached it already, as the terminal signals the whole process group);
    one that does not end in time gets SIGTERM, then SIGKILL."""
    for sig in ((signal.SIGTERM,) if forward else ()) + (None, signal.SIGTERM, signal.SIGKILL):
        if child.poll() is not None:
            break
        if sig is not None:
            child.send_signal(sig)
        try:
            child.wait(CHILD_GRACE)
        except subprocess.TimeoutExpired:
            pass
    for pipe in (child.stdout, child.stderr):
        pipe.close()


def suspendos(*args):
    child = subprocess.Popen([sys.executable, "-m", "suspendos.cli", *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate()
    except BaseException as e:
        _stop_child(child, forward=isinstance(e, Terminated)
                    or not isinstance(e, KeyboardInterrupt))
        raise
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def _last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].removeprefix("suspendos: error: ") if lines else "(no message)"


# A step that ended by Ctrl-C, SIGTERM or SIGHUP: the exit status the CLI gives for each.
_INTERRUPTED = {130: None, 128 + signal.SIGTERM: signal.SIGTERM, 128 + signal.SIGHUP: signal.SIGHUP}


def _interrupted(returncode):
    """Raise the interrupt a step ended by. Ctrl-C reaches the whole process group, so the
    step may finish its teardown and exit 130 before the demo's own KeyboardInterrupt is
    raised: the demo must then clean up as for its own interrupt, not report a failed step."""
    if returncode in _INTERRUPTED:
        signum = _INTERRUPTED[returncode]
        raise KeyboardInterrupt if signum is None else Terminated(signum)


def step(what, *args, parse_json=False):
    t = time.monotonic()
    p = suspendos(*args)
    _interrupted(p.returncode)
    if p.returncode:
        sys.exit(f"demo: {what} failed (exit {p.returncode}): {_last_line(p.stderr)}")
    # flushed: a reader that went away is noticed now, not after the last step
    print(f"  {what}: done in {time.monotonic() - t:.1f} s", flush=True)
    return json.loads(p.stdout) if parse_json else p.stdout


def check_second_resume(p):
    """A second resume of one image must be refused because it was resumed: any other
    failure (a crash, a build error, another refusal) is not the proof the demo claims."""
    try:
        s = json.loads(p.stdout)
    except ValueError:
        s = {}
    if p.returncode == 0:
        sys.exit("demo: the same image was resumed twice")
    if p.returncode != 1 or s.get("status") != "refused" or s.get("reason") != "already-resumed":
        sys.exit(f"demo: the second resume failed, but not as refused for already-resumed "
                 f"(exit {p.returncode}, {s.get('status')} {s.get('reason')}): "
                 f"{p.stderr.strip()}")


def add_arguments(ap):
    """demo's options, here and in `suspendos --help`, the man page and the completion."""
    ap.add_argument("--memory", default="512M", metavar="SIZE",
                    help="guest RAM: a size with a K, M or G suffix, a whole number of MiB, "
                         "64M to 8G (default 512M)")
    ap.add_argument("--compress", default="lz4", choices=("lz4", "lz4hc", "none"),
                    help="how the image's pages are compressed: lz4, lz4hc or none "
                         "(default lz4)")
    ap.add_argument("--seed", default=1, type=bounded_int(0, (1 << 64) - 1, "a seed"),
                    metavar="N", help="seed of the random data the test host fills RAM with, "
                    "0 to 2^64-1 (default 1)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the disk image and RAM dump as DIR/disk.img and DIR/ram.bin "
                    "(DIR is made if missing; refused if either file exists already: the demo "
                    "never replaces a file it did not make; default: a temporary folder, "
                    "removed at the end)")


def parser():
    ap = Parser(prog="suspendos demo", description=__doc__.splitlines()[0],
                epilog="Every argument is checked before anything is made. Interrupted "
                "(Ctrl-C, SIGTERM, SIGHUP, a closed output pipe), the demo stops its QEMU and "
                "removes what it made in this run: its temporary work folder, or the files "
                "(and the folder, if it made it) in --keep DIR. Nothing else is ever deleted.")
    add_arguments(ap)
    return ap


def _keep_folder(keep):
    """Check --keep DIR and the two files the demo would write there; touches nothing."""
    from .fileutil import check_output, show
    if not keep:
        raise UsageError("--keep: an empty folder name")
    if os.path.lexists(keep) and not os.path.isdir(keep):
        raise UsageError(f"--keep: {show(keep)}: not a folder")
    if not os.path.lexists(keep):
        # made by the run: where it would go must take a new name (a folder that exists,
        # writable, the name not too long), as for any output
        check_output(keep.rstrip("/") or keep, "--keep")
        return
    for name in OUTPUTS:
        path = os.path.join(keep, name)
        if os.path.lexists(path):
            raise UsageError(f"--keep: {show(path)} exists: the demo never replaces a file it "
                             f"did not make (move it away or give another folder)")
        check_output(path, "--keep")


def _remove_made(work, made_folder):
    """After an interrupted run with --keep: the files this run made, and the folder if it
    made that too and nothing else is in it."""
    for name in OUTPUTS:
        try:
            os.unlink(os.path.join(work, name))
        except FileNotFoundError:
            pass
    if made_folder:
        try:
            os.rmdir(work)
        except OSError:
            pass            # something else was put there meanwhile: not ours to delete


def main(argv=None):
    a = parser().parse_args(argv)
    from .sizes import parse_size
    from .target.qemu import check_memory
    check_memory(parse_size(a.memory, "--memory"))      # one line, exit 2, before any work
    if a.keep is not None:
        _keep_folder(a.keep)
        made_folder = not os.path.isdir(a.keep)
        os.makedirs(a.keep, exist_ok=True)
        work = a.keep
    else:
        made_folder, work = True, tempfile.mkdtemp(prefix="sos-demo-")
    try:
        return _run(a, work)
    except (KeyboardInterrupt, BrokenPipeError):
        if a.keep is not None:
            _remove_made(work, made_folder)
        raise
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(a, work):
    disk, ram = os.path.join(work, "disk.img"), os.path.join(work, "ram.bin")
    print(f"suspendos demo: a {a.memory} QEMU machine, {a.compress} compression, in {work}",
          flush=True)
    s = step("hibernate (build payload, boot, fill RAM, hand off, write image)",
             "qemu", "suspend", "--memory", a.memory, "--disk", disk, "--seed", a.seed,
             "--compress", a.compress, "--ram-dump", ram, "--json", "--quiet", parse_json=True)
    info = step("read the image header", "image", "info", disk, "--json", parse_json=True)
    step("check every chunk and every page against QEMU's memory dump",
         "image", "verify", disk, "--ram", ram)
    r = step("resume (boot the resume loader, verify, restore, return into the host)",
             "qemu", "resume", "--memory", a.memory, "--disk", disk, "--json", "--quiet",
             parse_json=True)
    again = suspendos("qemu", "resume", "--memory", a.memory, "--disk", disk, "--quiet",
                      "--json")
    _interrupted(again.returncode)
    check_second_resume(again)
    print("  resume the same image again: refused (already-resumed), as it must be", flush=True)
    saved = sum(e - s_ for s_, e in info["ranges"])
    print()
    print(f"The module saved {saved >> 20} MiB of RAM ({s['pages_saved']} pages, "
          f"{s['zero_pages']} of them zero and stored as bits only) into "
          f"{info['bytes_on_disk'] / 1e6:.1f} MB on disk, in {s['seconds']:.2f} s as the payload "
          f"measured it: {s['ram_mb_per_s']} MB/s of RAM, {s['mb_per_s']} MB/s written.")
    print(f"The test host checked that none of its memory and none of its CPU state changed: "
          f"memory {s['host_memory_check']}, CPU {s['host_cpu_check']}.")
    print("Every saved page in the image equals QEMU's own dump of guest RAM.")
    print(f"The machine came back: the resume loader restored {r['pages_restored']} pages in "
          f"{r['seconds']:.2f} s ({r['mb_per_s']} MB/s of image read) and returned into the "
          f"host's handoff call; the host re-checked every page it had checksummed before "
          f"suspending: memory {r['host_memory_check']}, CPU {r['host_cpu_check']}. "
          f"A second resume of the same image was refused.")
    return 0


if __name__ == "__main__":
    from .cli import main as cli_main       # its signal handler and one-line errors
    sys.exit(cli_main(["demo", *sys.argv[1:]]))
