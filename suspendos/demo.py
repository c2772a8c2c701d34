"""The main job: build a payload for the QEMU test machine, hibernate the machine to a disk
image, check the image against QEMU's own memory dump, power off, resume the machine from the
image, and say in plain words what happened.

usage: suspendos demo [--memory 512M] [--compress lz4|none] [--seed N] [--keep DIR]
(`./run demo` in a checkout; installed, `suspendos demo` from any folder)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def suspendos(*args):
    return subprocess.run([sys.executable, "-m", "suspendos.cli", *map(str, args)],
                          capture_output=True, text=True)


def step(what, *args, parse_json=False):
    t = time.monotonic()
    p = suspendos(*args)
    if p.returncode:
        sys.exit(f"demo: {what} failed (exit {p.returncode}):\n{p.stderr.strip()}")
    print(f"  {what}: done in {time.monotonic() - t:.1f} s")
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
    ap.add_argument("--seed", default=1, type=int, metavar="N",
                    help="seed of the random data the test host fills RAM with, 0 to 2^64-1 "
                         "(default 1)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the disk image and dumps in this folder (default: a temporary "
                         "folder, removed at the end)")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="suspendos demo", description=__doc__.splitlines()[0])
    add_arguments(ap)
    a = ap.parse_args(argv)
    from .errors import UsageError
    from .sizes import parse_size
    from .target.qemu import check_memory
    try:                                # a bad size is one line and exit 2, before any work
        check_memory(parse_size(a.memory, "--memory"))
    except UsageError as e:
        print(f"suspendos demo: error: {e}", file=sys.stderr)
        return 2
    work = a.keep or tempfile.mkdtemp(prefix="suspendos-demo-")
    os.makedirs(work, exist_ok=True)
    disk, ram = os.path.join(work, "disk.img"), os.path.join(work, "ram.bin")
    for stale in (disk, ram):
        if os.path.exists(stale):
            os.unlink(stale)
    print(f"suspendos demo: a {a.memory} QEMU machine, {a.compress} compression, in {work}")
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
    check_second_resume(again)
    print("  resume the same image again: refused (already-resumed), as it must be")
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
    if not a.keep:
        for f in (disk, ram):
            os.unlink(f)
        os.rmdir(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
