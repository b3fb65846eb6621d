"""``osteoai batch INPUT... --out DIR``: screen a cohort on local processes or a Dask cluster."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from OsteoAIBaseLib.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..commands.run import add_pipeline_arguments

    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a folder tree of studies (each DICOM series folder or CT volume file found), a list "
        "file (one path per line) or a CSV with a path column and optional age, sex, ... columns",
    )
    p.add_argument("--out", required=True, help="results folder: studies/<id>/, cohort.csv/.parquet, summary")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes (default: one per core; fewer start when memory is short)",
    )
    p.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="memory the local workers may use together (default: 85%% of what is free)",
    )
    p.add_argument("--dask", metavar="ADDRESS", help="run on a Dask distributed scheduler, e.g. tcp://host:8786")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip studies whose results are complete for the same input, software version and options",
    )
    add_pipeline_arguments(p)


def main(args) -> int:
    from ..commands.run import options_from_args

    options = options_from_args(args)
    return run_batch(
        args.inputs,
        args.out,
        options,
        workers=args.workers,
        dask=args.dask,
        resume=args.resume,
        memory_gb=args.memory_gb,
        scene=args.scene,
        quiet=args.quiet,
    )


def run_batch(
    inputs, out, options, workers=None, dask=None, resume=False, memory_gb=None, scene=False, quiet=False, stream=None
) -> int:
    """The whole batch; returns the exit code (0 ran to the end, failures included; 130 interrupted).
    ``dask`` is a scheduler address or a Cluster object."""
    from . import cohort, memory, summary
    from .discover import discover
    from .study import is_complete, remove_partials

    stream = stream or sys.stderr
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        t0 = time.perf_counter()
        specs = discover(list(inputs), exclude=out)
        if not specs:
            raise InputError("no studies found in the batch inputs (DICOM series folders or CT volume files)")
        remove_partials(out)
        outcomes: dict[str, dict] = {}
        todo = []
        for s in specs:
            if resume and is_complete(out, s, options):
                outcomes[s.id] = {"id": s.id, "status": "skipped", "seconds": None, "peak_mb": None}
            else:
                todo.append(s)
        if dask is not None:
            from .dask_runner import DaskRunner

            runner, threads = DaskRunner(dask), 1
            where = runner.describe()
        else:
            from .local import LocalRunner

            cores = os.cpu_count() or 1
            n = max(1, min(workers or cores, len(todo) or 1))
            budget = memory_gb * 1e9 if memory_gb else 0.85 * memory.available_bytes()
            runner, threads = LocalRunner(n, budget), max(1, cores // n)
            where = f"{n} local worker process{'es' if n > 1 else ''}"
        run_id = uuid.uuid4().hex[:12]
        tasks = [
            {
                "spec": s,
                "options": options,
                "out_root": str(out.resolve()),
                "run_id": run_id,
                "threads": threads,
                "scene": scene,
            }
            for s in todo
        ]
        estimates = [memory.estimate_bytes(s.input) for s in todo]
        print(
            f"osteoai batch: {len(specs)} studies, {len(specs) - len(todo)} already complete, {len(todo)} to "
            f"screen on {where}",
            file=stream,
            flush=True,
        )
        failures, interrupted, n_ok, n_skip = [], False, 0, len(specs) - len(todo)
        bar = _bar(len(todo), quiet, stream)
        try:
            for o in runner.run(tasks, estimates):
                outcomes[o["id"]] = o
                if o["status"] == "failed":
                    failures.append(o)
                    bar.write(f"failed {o['id']}: {o['reason']}", file=stream)
                else:
                    n_ok += 1
                bar.set_postfix_str(f"ok {n_ok}, failed {len(failures)}, skipped {n_skip}", refresh=False)
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
            runner.stop()
        finally:
            bar.close()
            if dask is not None:
                runner.close()
        done_ids = [s.id for s in specs if outcomes.get(s.id, {}).get("status") in ("done", "skipped")]
        rows = [r for sid in done_ids for r in cohort.study_rows(out, sid)]
        cohort.write_cohort(out, rows)
        cohort.write_failures(out, failures)
        cohort.write_index(out, specs, outcomes)
        s = summary.build_summary(rows, outcomes, len(specs), time.perf_counter() - t0, where)
        summary.write_summary(out, rows, s)
        print(summary.summary_text(s), file=stream, flush=True)
        if interrupted:
            print(
                f"osteoai batch: interrupted; {len(done_ids)} studies are complete in {out}/studies; "
                "run again with --resume to finish",
                file=stream,
                flush=True,
            )
            return 130
        return 0


def _bar(total: int, quiet: bool, stream):
    from tqdm import tqdm

    # time left comes from the recent rate (smoothing), since big and small studies are mixed
    return tqdm(
        total=total,
        unit="study",
        file=stream,
        disable=quiet,
        dynamic_ncols=True,
        smoothing=0.1,
        mininterval=1.0 if not stream.isatty() else 0.1,
        desc="screening",
    )


@contextmanager
def _lock(out: Path):
    """One batch per results folder: two would remove each other's half-written studies."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one batch per folder is then the user's care
        yield
        return
    with open(out / ".batch.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"another osteoai batch is writing to {out}") from None
        yield
