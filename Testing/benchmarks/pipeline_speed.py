"""Speed and memory of `osteoai run` on the default 300-slice phantom, or on a CT of your own (issue 10:
<= 15 s end to end on 2 cores, <= 4 GB peak).

Run: .venv/bin/python Testing/benchmarks/pipeline_speed.py [--segmenter classical] [--repeats 3]
     .venv/bin/python Testing/benchmarks/pipeline_speed.py --input ../shared/data/tcia-ricord-chest-1.25mm/ct.nii.gz
The phantom is built first (not timed); each run is a separate process (its peak RSS is its own) and the
load average is printed beside it: the machine is shared, so read the best and the median of the runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
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
    ap.add_argument("--input", help="a CT (file or DICOM folder) to screen instead of the default phantom")
    args = ap.parse_args()
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    with tempfile.TemporaryDirectory() as tmp:
        if args.input:
            ct = Path(args.input)
            print(f"input: {ct}; {os.cpu_count()} CPU cores")
        else:
            ph = make_phantom(PhantomParams(seed=args.seed))
            ct = write_phantom(ph, Path(tmp) / "phantom")["ct"]
            print(f"phantom: {ph.volume.shape} voxels at {ph.volume.spacing} mm; {os.cpu_count()} CPU cores")
        exe = Path(sys.executable).with_name("osteoai")
        walls = []
        for r in range(args.repeats):
            load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
            out = Path(tmp) / f"run{r}"
            t0 = time.perf_counter()
            proc = subprocess.run(
                [str(exe), "run", str(ct), "--out", str(out), "--quiet", "--segmenter", args.segmenter],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            walls.append(wall)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr)
                return 1
            peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
            timing = [line for line in proc.stdout.splitlines() if line.startswith("Timing:")]
            print(
                f"run {r + 1}: wall {wall:.1f} s (target <= 15 s), peak RSS {peak_gb:.2f} GB (target <= 4 GB), "
                f"load average before it {load}"
            )
            print("  " + (timing[0] if timing else ""))
        if len(walls) > 1:
            print(f"wall best {min(walls):.1f} s, median {statistics.median(walls):.1f} s over {len(walls)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
