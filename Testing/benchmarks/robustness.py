"""Robustness benchmark (issue 12): the DICOM header fuzzer over many series, each case time-boxed, and the
outcome counts printed. A crash (any exception but InputError), a hang or a silent wrong number (a series
that reads but does not hold the seed's values, with no QC flag saying so) is a failure; 'flagged' counts
series that read with other values and a QC flag.

    python Testing/benchmarks/robustness.py --n 10000 --jobs 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Python"))


def _chunk(args) -> tuple[Counter, list]:
    import numpy as np
    from OsteoAIBaseLib.imageio import read_volume
    from support.dicom_fuzz import base_series, mutate, run_case

    start, stop, seed, timeout_s, work = args
    work = Path(work) / f"w{start}"
    base = base_series(work / "base")
    ref = read_volume(base).array
    counts: Counter = Counter()
    bad = []
    for i in range(start, stop):
        case = work / f"c{i}"
        done = mutate(base, case, np.random.default_rng([seed, i]))
        outcome, detail = run_case(case, timeout_s)
        if outcome == "volume":
            v = read_volume(case).array
            if not any(np.array_equal(v, ref[s : s + len(v)]) for s in range(len(ref) - len(v) + 1)):
                # values differ from the seed's: silent unless a QC flag (not a header note) says so
                flags = [f for f in detail.split("; ") if f and not f.startswith("header:")]
                outcome, detail = ("flagged", detail) if flags else ("wrong_values", f"shape {v.shape}")
        counts[outcome] += 1
        if outcome not in ("volume", "flagged", "input_error"):
            bad.append((i, done, detail))
        shutil.rmtree(case, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return counts, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="fuzzed series (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=30, help="seconds allowed per case (a longer one is a hang)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    size = max(1, args.n // (args.jobs * 8))
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as work:
        chunks = [(s, min(s + size, args.n), args.seed, args.timeout, work) for s in range(0, args.n, size)]
        counts: Counter = Counter()
        bad: list = []
        with ProcessPoolExecutor(args.jobs) as ex:
            for c, b in ex.map(_chunk, chunks):
                counts.update(c)
                bad += b
    dt = time.perf_counter() - t0
    print(f"DICOM header fuzzer: {args.n} series (seed {args.seed}) in {dt:.0f} s ({1000 * dt / args.n:.0f} ms each)")
    for outcome in ("volume", "flagged", "input_error", "crash", "hang", "wrong_values"):
        print(f"  {outcome:13s} {counts.get(outcome, 0)}")
    for i, done, detail in bad[:20]:
        print(f"  case {i}: {detail} <- {'; '.join(done)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
