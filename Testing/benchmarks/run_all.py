"""Run every benchmark in turn and print their numbers (`make bench`). Each is also runnable alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ["pipeline_speed.py"],
    ["phantom_accuracy.py"],
    ["real_data.py"],
    ["real_ct.py"],
    ["vbmd_accuracy.py", "--n", "144", "--masks", "pipeline", "--invariance-n", "36"],
    ["vbmd_accuracy.py", "--n", "36", "--masks", "truth"],
    ["phantom_realism.py", "--n-phantoms", "40"],
    ["vbmd_consistency.py"],
    ["segmenter_phantoms.py", "--n", "36"],
    ["precision.py"],
    ["segmenter_speed.py"],
    ["batch_throughput.py", "--rounds", "2"],
    ["robustness.py", "--n", "10000"],
]


def main() -> int:
    failed = []
    for cmd in BENCHMARKS:
        print(f"\n=== {' '.join(cmd)} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]]).returncode != 0:
            failed.append(cmd[0])
    print(f"\n{len(BENCHMARKS) - len(failed)} benchmarks ran, {len(failed)} failed {failed or ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
