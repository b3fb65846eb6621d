"""Speed and memory of `osteoai run` on the default 300-slice phantom (target: <= 30 s, <= 4 GB peak).

Run: .venv/bin/python Testing/benchmarks/pipeline_speed.py [--segmenter classical] [--repeats 1]
The phantom is built first (not timed); the run is a separate process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segmenter", default="auto")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    with tempfile.TemporaryDirectory() as tmp:
        ph = make_phantom(PhantomParams(seed=args.seed))
        files = write_phantom(ph, Path(tmp) / "phantom")
        print(f"phantom: {ph.volume.shape} voxels at {ph.volume.spacing} mm; {os.cpu_count()} CPU cores")
        exe = Path(sys.executable).with_name("osteoai")
        for r in range(args.repeats):
            out = Path(tmp) / f"run{r}"
            t0 = time.perf_counter()
            proc = subprocess.run(
                [str(exe), "run", str(files["ct"]), "--out", str(out), "--quiet", "--segmenter", args.segmenter],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr)
                return 1
            peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
            timing = [line for line in proc.stdout.splitlines() if line.startswith("Timing:")]
            print(f"run {r + 1}: wall {wall:.1f} s (target <= 30 s), peak RSS {peak_gb:.2f} GB (target <= 4 GB)")
            print("  " + (timing[0] if timing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
