"""`osteoai batch` throughput (issue 16): 20 studies (every real CT in ../shared/data, phantoms to make up 20) on
2 local worker processes and on a 2-worker Dask LocalCluster; per-stage time and per-study memory; a scaling
table for 100,000 studies from those measurements; and a kill at 50% followed by --resume.

    .venv/bin/python Testing/benchmarks/batch_throughput.py [--n 20] [--workers 2] [--keep DIR]

Targets: >= 400 studies/hour on this 2-core machine; LocalCluster within 15% of local processes; after the kill,
no study repeated, none lost, cohort table identical to the clean run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OSTEOAI_SHARED_DATA", REPO.parent / "shared" / "data"))
PHANTOM_GRID = dict(matrix=256, spacing=(1.4, 1.4, 2.0))  # a 5-level 256^2 torso: smaller than a chest CT


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def make_inputs(root: Path, n: int) -> list[Path]:
    from OsteoAILib.batch.discover import discover
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    real = [Path(s.input) for s in discover([SHARED])] if SHARED.is_dir() else []
    phantoms = []
    for i in range(max(0, n - len(real))):
        p = PhantomParams(
            seed=500 + i,
            kvp=(80, 100, 120, 140)[i % 4],
            dose=("standard", "low")[i % 2],
            levels=("T11-L2", "T10-L3", "T12-L3")[i % 3],
            age=45 + 5 * i,
            sex="FM"[i % 2],
            **PHANTOM_GRID,
        )
        d = root / "phantoms" / f"p{i:02d}"
        write_phantom(make_phantom(p), d)
        phantoms.append(d / "ct.nii.gz")
    studies = (real + phantoms)[:n]
    lst = root / "studies.txt"
    lst.write_text("\n".join(str(p) for p in studies) + "\n")
    print(
        f"{len(studies)} studies: {min(len(real), n)} real CT from {SHARED}, {len(studies) - min(len(real), n)} "
        f"phantoms {PHANTOM_GRID}"
    )
    return [lst]


def timed_batch(inputs, out: Path, **kw) -> dict:
    from OsteoAILib.batch.command import run_batch
    from OsteoAILib.pipeline import PipelineOptions

    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        code = run_batch(inputs, out, PipelineOptions(), quiet=True, stream=devnull, **kw)
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    s["wall_total_s"] = wall  # discovery + screening + tables, what a user waits for
    s["exit"] = code
    return s


def per_study(out: Path) -> list[dict]:
    from OsteoAILib.batch.memory import voxels

    with open(out / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["voxels"] = voxels(r["input"])
    return [r for r in rows if r["status"] == "done"]


def report_run(s: dict, out: Path) -> None:
    run, t = s["this_run"], s["seconds_per_study"]
    print(
        f"{run['screened']} screened, {run['failed']} failed in {s['wall_total_s']:.1f} s -> "
        f"{3600 * run['screened'] / s['wall_total_s']:.0f} studies/hour (target >= 400); per study mean "
        f"{t['mean']:.1f} s wall, {s['cpu_s_per_study']:.1f} s CPU; median {t['median']:.1f} s, max {t['max']:.1f} s"
    )
    print("per-stage mean s: " + ", ".join(f"{k} {v:.2f}" for k, v in s["stage_mean_s"].items()))


def fit_memory(rows) -> tuple[float, float]:
    """peak MB = a + b * voxels (least squares): what memory.py's BASE_BYTES and BYTES_PER_VOXEL should be."""
    xs = [r["voxels"] for r in rows]
    ys = [float(r["peak_mb"]) * 2**20 for r in rows]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    return my - b * mx, b


def kill_and_resume(inputs, out: Path, n: int, clean_csv: bytes) -> str:
    from OsteoAILib.batch.command import run_batch
    from OsteoAILib.pipeline import PipelineOptions

    cmd = [
        sys.executable,
        "-m",
        "OsteoAILib.cli",
        "batch",
        *map(str, inputs),
        "--out",
        str(out),
        "--workers",
        "2",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def published():
        d = out / "studies"
        return [p for p in d.iterdir() if not p.name.startswith(".")] if d.is_dir() else []

    while len(published()) < n // 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job, workers included, with no chance to clean up
    proc.wait()
    before = {p.name: json.loads((p / "study.json").read_text())["run_id"] for p in published()}
    partial = len(list((out / "studies").glob(".partial-*")))
    with open(os.devnull, "w") as devnull:
        run_batch(inputs, out, PipelineOptions(), workers=2, resume=True, quiet=True, stream=devnull)
    s = json.loads((out / "summary.json").read_text())["this_run"]
    after = {p.name: json.loads((p / "study.json").read_text())["run_id"] for p in published()}
    repeated = sum(1 for k, v in before.items() if after.get(k) != v)
    ok = (
        repeated == 0
        and len(after) == n
        and s["skipped_complete"] == len(before)
        and s["screened"] == n - len(before)
        and (out / "cohort.csv").read_bytes() == clean_csv
    )
    return (
        f"killed with {len(before)}/{n} published ({partial} half-written folders hidden); resume skipped "
        f"{s['skipped_complete']}, screened {s['screened']}; repeated {repeated}, lost {n - len(after)}; cohort "
        f"table identical to the clean run: {(out / 'cohort.csv').read_bytes() == clean_csv} -> "
        f"{'PASS' if ok else 'FAIL'}"
    )


def scaling_table(sec_per_study: float, peak_mb: float, big_sec: float, big_mb: float) -> list[str]:
    lines = [
        "| workers (1 core each) | 100,000 studies, this mix | 100,000 full chest CTs | memory per worker |",
        "|---|---|---|---|",
    ]
    for w in (2, 16, 64, 256, 1024):
        t1 = 1e5 * sec_per_study / w / 3600
        t2 = 1e5 * big_sec / w / 3600
        lines.append(f"| {w} | {_h(t1)} | {_h(t2)} | {peak_mb / 1024:.1f} GB ({big_mb / 1024:.1f} GB for the big) |")
    return lines


def _h(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="keep inputs and outputs here (default: a temporary folder)")
    ap.add_argument("--rounds", type=int, choices=(1, 2), default=1, help="2: local, dask, dask, local")
    ap.add_argument("--skip-kill", action="store_true")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="osteoai-batch-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"before: {load()}")
    inputs = make_inputs(root, args.n)

    # ABBA order over --rounds 2: load from other users drifting during the runs hits both executors alike
    order = ["local", "dask"] if args.rounds == 1 else ["local", "dask", "dask", "local"]
    runs: dict[str, list[dict]] = {"local": [], "dask": []}
    for i, kind in enumerate(order):
        out = root / f"{kind}{i}"
        print(
            f"\n== {kind}: "
            + (
                f"{args.workers} local worker processes"
                if kind == "local"
                else "Dask LocalCluster, 2 worker processes x 1 thread"
            )
            + f" ({load()})"
        )
        if kind == "local":
            s = timed_batch(inputs, out, workers=args.workers)
        else:
            from distributed import LocalCluster

            with LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
            ) as cluster:
                s = timed_batch(inputs, out, dask=cluster)
        s["out"] = out
        runs[kind].append(s)
        report_run(s, out)
        print(f"after: {load()}")
    ref = runs["local"][0]["out"] / "cohort.csv"
    same = all((r["out"] / "cohort.csv").read_bytes() == ref.read_bytes() for k in runs for r in runs[k])
    wall = {k: sum(r["wall_total_s"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.fmean(r["cpu_s_per_study"] for r in v) for k, v in runs.items()}
    ratio = wall["local"] / wall["dask"]
    print(
        f"\nLocalCluster throughput = {ratio * 100:.0f}% of local processes (target >= 85%) -> "
        f"{'PASS' if ratio >= 0.85 else 'FAIL'}; CPU per study local {cpu['local']:.1f} s, dask {cpu['dask']:.1f} s; "
        f"every cohort table identical: {same}"
    )
    rows = per_study(runs["local"][0]["out"])
    a, b = fit_memory(rows)
    peaks = sorted(float(r["peak_mb"]) for r in rows)
    big = max(rows, key=lambda r: r["voxels"])
    print(
        f"peak memory per study: median {statistics.median(peaks):.0f} MB, max {peaks[-1]:.0f} MB; fit "
        f"{a / 1e6:.0f} MB + {b:.1f} B/voxel; largest study {big['voxels'] / 1e6:.0f} Mvoxels: "
        f"{float(big['cpu_s']):.1f} CPU s, {float(big['peak_mb']):.0f} MB"
    )

    if not args.skip_kill:
        print(f"\n== kill at 50%, then --resume ({load()})")
        print(kill_and_resume(inputs, root / "killed", args.n, ref.read_bytes()))

    print("\n== scaling on paper (1 study per core at a time; inputs and DIR on a shared file system)")
    p95 = peaks[min(len(peaks) - 1, math.ceil(0.95 * len(peaks)) - 1)]
    cpu_mean = statistics.fmean(float(r["cpu_s"]) for r in rows)
    print(
        f"per study: {cpu_mean:.1f} CPU s (this mix), {float(big['cpu_s']):.1f} CPU s (largest); memory p95 "
        f"{p95:.0f} MB"
    )
    for line in scaling_table(cpu_mean, p95, float(big["cpu_s"]), float(big["peak_mb"])):
        print(line)
    print(f"\nresults in {root}" if args.keep else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
