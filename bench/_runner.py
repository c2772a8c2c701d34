"""What the benchmark scripts share: running `suspendos` as a user does and timing it with
the host's clock, medians, load averages, the rotated (interleaved) order of repetitions,
and where results go (bench/results/<script>.json, inside the repository).

On a shared, loaded machine absolute numbers move a lot from minute to minute; the scripts
interleave their cases, repeat them, and quote medians and the ratios of runs made in the
same repetition. Load is described by the load averages (1, 5, 15 minutes) only.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def suspendos_cmd():
    exe = Path(sys.executable).parent / "suspendos"
    return [str(exe)] if exe.exists() else [shutil.which("suspendos") or "suspendos"]


def med(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def loadavg():
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def log(tag, msg):
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


def results_path(script, given=None):
    """--json FILE, or bench/results/<script>.json."""
    if given:
        return Path(given)
    RESULTS.mkdir(exist_ok=True)
    return RESULTS / f"{Path(script).stem}.json"


def write_results(path, data):
    """The JSON, with the home folder written as ~ (results name no one's machine)."""
    text = json.dumps(data, indent=2, default=str).replace(str(Path.home()), "~")
    Path(path).write_text(text + "\n")


def run_cli(args, exe=None):
    """`suspendos ARGS --json --quiet`: the JSON it printed plus ok, host_wall_s (the host's
    wall clock around the whole command: build, QEMU boot, guest work, exit) and the
    command; or ok False with the error's tail. exe: another build's `suspendos`."""
    cmd = [*args, "--json", "--quiet"]
    t0 = time.monotonic()
    p = subprocess.run([*([str(exe)] if exe else suspendos_cmd()), *cmd], capture_output=True,
                       text=True)
    wall = time.monotonic() - t0
    try:
        r = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "error": p.stderr.strip()[-400:], "command": "suspendos " + " ".join(cmd)}
    r.update(ok=p.returncode == 0, host_wall_s=round(wall, 2), command="suspendos " + " ".join(cmd))
    return r


def suspend(work: Path, name: str, extra, memory="1G", reuse=False):
    """`qemu suspend` to WORK/NAME.img (a new sparse file unless reuse)."""
    disk = work / f"{name}.img"
    if not reuse:
        disk.unlink(missing_ok=True)
    r = run_cli(["qemu", "suspend", "--memory", memory, "--disk", str(disk), *extra])
    if r.get("ok") and r.get("seconds"):
        r["nonzero_mb_per_s"] = round(r["raw_bytes"] / r["seconds"] / 1e6, 1)
    return r


def resume(work: Path, name: str, memory="1G"):
    """`qemu resume` from WORK/NAME.img."""
    r = run_cli(["qemu", "resume", "--memory", memory, "--disk", str(work / f"{name}.img")])
    if r.get("ok") and r.get("seconds"):
        r["ram_mb_per_s"] = round(r["pages_restored"] * 4096 / r["seconds"] / 1e6, 1)
    return r


def rotated(units, reps, tag, show=("ok", "host_seconds", "host_disk_mb_per_s")):
    """Run every unit once per repetition, the order rotated by one place each time. A unit
    is rep -> [(kind, result dict)]. Returns the runs, each with rep, kind and the load
    averages before it."""
    runs = []
    for rep in range(1, reps + 1):
        k = (rep - 1) % len(units)
        for fn in units[k:] + units[:k]:
            load = loadavg()
            for kind, r in fn(rep):
                runs.append({"rep": rep, "kind": kind, "load_before": load, **r})
                brief = {x: r.get(x) for x in show if r.get(x) is not None}
                log(tag, f"rep {rep} {kind}: {brief} (load {load})")
    return runs


def column(runs, kind, field):
    return [r.get(field) for r in runs if r.get("kind") == kind and r.get("ok")]


def per_rep_ratio(runs, reps, k1, f1, k2, f2):
    """x/y for each repetition that has both (runs of the same minutes)."""
    out = []
    for rep in range(1, reps + 1):
        x = [r.get(f1) for r in runs if r["rep"] == rep and r["kind"] == k1 and r.get("ok")]
        y = [r.get(f2) for r in runs if r["rep"] == rep and r["kind"] == k2 and r.get("ok")]
        if x and y and x[0] and y[0]:
            out.append(round(x[0] / y[0], 3))
    return out


def load_summary(runs):
    loads = [r["load_before"] for r in runs if r.get("load_before")]
    return {f"load{n}_median": med([l[i] for l in loads]) for i, n in enumerate((1, 5, 15))} | \
        {"load1_range": [min(l[0] for l in loads), max(l[0] for l in loads)] if loads else None}
