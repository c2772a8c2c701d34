#!/usr/bin/env python3
"""Issue 4's compression benchmark on real memory: `suspendos bench compress` (our LZ4 against
liblz4's LZ4_compress_default, same 64 KiB chunks, one process) on

* linux:          QMP pmemsave of the stock Debian kernel booted to the busybox shell after
                  the swsusp baseline's tmpfs fill (bench/linux_swsusp.py --dump), 1 GiB;
* testhost:       the test host's default mix (25,25,25,25), `suspendos qemu suspend
                  --memory 256M --ram-dump`;
* testhost-e2e:   the mix the end-to-end benchmark uses (70,6,7,17), 1 GiB;
* each of those with its all-zero pages removed ("-nonzero"): what the payload actually
  compresses, since it records zero pages in the page map and never compresses them;
* generated:      the default corpus `suspendos bench compress` makes itself.

    python bench/compress_corpora.py WORKDIR [--rounds 3] [--linux-workdir DIR] [--json FILE]

Corpora are made once in WORKDIR (kept for later runs). Each round runs every corpus once,
so the rounds interleave; the report gives per-corpus medians over rounds of what each
`bench compress` run reports (itself a median over its 7 repetitions, in thread CPU time,
with our match-length path as the payload picks it on this CPU and a byte-for-byte
comparison of the blocks).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import linux_swsusp  # noqa: E402
from _runner import loadavg, results_path, suspendos_cmd, write_results  # noqa: E402

PAGE = 4096


def strip_zero_pages(src: Path, dst: Path):
    zero = bytes(PAGE)
    kept = total = 0
    with open(src, "rb") as f, open(dst, "wb") as o:
        while block := f.read(1 << 22):
            for p in range(0, len(block), PAGE):
                page = block[p:p + PAGE]
                total += 1
                if page != zero:
                    o.write(page)
                    kept += 1
    return {"pages": total, "nonzero_pages": kept}


def make_corpora(work: Path, linux_work: Path):
    work.mkdir(parents=True, exist_ok=True)
    c = {}
    linux = work / "linux-busybox-1G.bin"
    if not linux.exists():
        info = linux_swsusp.setup(linux_work)
        linux_swsusp.ram_dump(info, linux_work, linux)
    c["linux"] = linux
    for name, mem, mix in (("testhost", "256M", None), ("testhost-e2e", "1G", "70,6,7,17")):
        out = work / f"{name}-{mem}.bin"
        if not out.exists():
            disk = work / f"{name}.img"
            disk.unlink(missing_ok=True)
            cmd = [*suspendos_cmd(), "qemu", "suspend", "--memory", mem, "--disk", str(disk),
                   "--ram-dump", str(out), "--json", "--quiet"] + (["--mix", mix] if mix else [])
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            disk.unlink()
        c[name] = out
    stats = {}
    for name in list(c):
        nz = work / f"{c[name].stem}-nonzero.bin"
        stats[name] = strip_zero_pages(c[name], nz)
        c[name + "-nonzero"] = nz
    c["generated"] = None
    return c, stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--linux-workdir", type=Path,
                    help="bench/linux_swsusp.py's work folder (default WORKDIR/linux)")
    ap.add_argument("--json", type=Path, help="default: bench/results/compress_corpora.json")
    a = ap.parse_args(argv)
    work = a.workdir.resolve()
    corpora, stats = make_corpora(work, (a.linux_workdir or work / "linux").resolve())
    runs = []
    for rnd in range(1, a.rounds + 1):
        for name, path in corpora.items():
            cmd = [*suspendos_cmd(), "bench", "compress", "--json"]
            if path:
                cmd += ["--corpus", str(path)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                          text=True).stdout)
            runs.append({"round": rnd, "name": name, **r})
            print(f"round {rnd} {name}: ours {r['ours_mb_s']} MB/s, liblz4 {r['liblz4_mb_s']} "
                  f"MB/s, speed {r['speed_ratio']}, size {r['size_ratio']}", file=sys.stderr)
    summary = {}
    for name in corpora:
        rs = [r for r in runs if r["name"] == name]
        summary[name] = {
            "corpus_bytes": rs[0]["corpus_bytes"], "liblz4_version": rs[0]["liblz4_version"],
            **{k: round(statistics.median(r[k] for r in rs), 4)
               for k in ("ours_mb_s", "liblz4_mb_s", "speed_ratio", "size_ratio",
                         "ours_bytes", "liblz4_bytes")},
            "ours_path": rs[0].get("ours_path"),
            "identical_output_every_round": all(r.get("identical_output") for r in rs),
            "speed_ratio_each_round": [r["speed_ratio"] for r in rs],
            "size_ratio_each_round": [r["size_ratio"] for r in rs],
            **({"zero_page_stats": stats[name]} if name in stats else {})}
    summary["load_after"] = loadavg()
    write_results(results_path(__file__, a.json), {"summary": summary, "runs": runs})
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
