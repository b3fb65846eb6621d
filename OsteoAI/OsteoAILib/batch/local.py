"""Local worker processes, memory-aware: a study starts only when the memory the running studies are
estimated to need, plus its own estimate, fits the budget (one study always runs, whatever its size)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .study import screen_study


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; only the parent decides what stops, so workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalRunner:
    def __init__(self, workers: int, budget_bytes: float):
        self.workers, self.budget = max(1, workers), budget_bytes
        self.pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a forked child would inherit the parent's threads (tqdm's monitor) and locks
        return ProcessPoolExecutor(
            self.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
        )  # no max_tasks_per_child: it can hang on 3.11

    def run(self, tasks: list[dict], estimates: list[float]) -> Iterator[dict]:
        """Yield each study's outcome as it finishes. A worker that dies (killed for memory, crashed) fails the
        studies it may have held, after one retry each, and the pool is rebuilt: the batch goes on."""
        queue = deque(zip(tasks, estimates, strict=True))
        running: dict = {}
        tries: dict[str, int] = {}
        self.pool = self._new_pool()
        try:
            while queue or running:
                used = sum(est for _, est in running.values())
                while queue and len(running) < self.workers and (not running or used + queue[0][1] <= self.budget):
                    task, est = queue.popleft()
                    running[self.pool.submit(screen_study, task)] = (task, est)
                    used += est
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    task, est = running.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        sid = task["spec"].id
                        tries[sid] = tries.get(sid, 0) + 1
                        if tries[sid] >= 2:
                            yield {
                                "id": sid,
                                "status": "failed",
                                "seconds": 0.0,
                                "timing_s": {},
                                "peak_mb": None,
                                "reason": "worker process died twice on this study (out of memory or crash)",
                            }
                        else:
                            queue.appendleft((task, est))
                if broken:
                    for fut, item in list(running.items()):  # the whole pool went down with it
                        running.pop(fut)
                        queue.appendleft(item)
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    self.pool = self._new_pool()
        except BaseException:  # Ctrl-C, or the caller closed the generator
            self.stop()
            raise
        self.pool.shutdown()
        self.pool = None

    def stop(self) -> None:
        """Stop now: queued studies never start; running ones are killed (their half-written folders stay
        hidden as .partial-*, every published study is untouched)."""
        if self.pool is None:
            return
        procs = list((self.pool._processes or {}).values())  # no public handle on the worker processes
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in procs:
            p.join(timeout=5)
        self.pool = None
