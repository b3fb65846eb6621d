"""The same studies on a Dask distributed cluster. Each worker runs ``screen_study`` and writes its study's
folder straight into the output folder, which must therefore be a path every worker sees (a shared file
system); the client only gathers the small outcome records.

Submission is windowed (a few studies per worker thread in flight), so a 100,000-study cohort never sits in
the scheduler at once and Ctrl-C has little to cancel. Workers that advertise a ``MEMORY`` resource
(``dask worker --resources MEMORY=16e9``) get studies by their estimated memory, as the local runner does.
"""

from __future__ import annotations

from collections.abc import Iterator

from .study import screen_study

PER_THREAD_IN_FLIGHT = 2


class DaskRunner:
    def __init__(self, address):
        from distributed import Client
        from OsteoAIBaseLib.errors import InputError

        # address: "tcp://host:8786", or a Cluster object (tests pass a LocalCluster)
        try:
            self.client = Client(address, set_as_default=False, timeout="30s")
        except (OSError, TimeoutError, ValueError) as e:
            raise InputError(f"cannot reach the Dask scheduler at {address} ({type(e).__name__})") from None
        self.futures: set = set()

    def describe(self) -> str:
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 1) for w in workers.values())
        return f"dask cluster {info.get('address', '?')}: {len(workers)} workers, {threads} threads"

    def _threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def _memory_resource(self) -> bool:
        workers = self.client.scheduler_info().get("workers", {})
        return bool(workers) and all("MEMORY" in (w.get("resources") or {}) for w in workers.values())

    def run(self, tasks: list[dict], estimates: list[float]) -> Iterator[dict]:
        from distributed import as_completed

        use_mem = self._memory_resource()
        pending = list(zip(tasks, estimates, strict=True))[::-1]
        meta: dict = {}

        def submit():
            task, est = pending.pop()
            kw = {"resources": {"MEMORY": est}} if use_mem else {}
            fut = self.client.submit(
                screen_study, task, key=f"osteoai-study-{task['spec'].id}-{task['run_id']}", pure=False, retries=0, **kw
            )
            meta[fut.key] = task
            self.futures.add(fut)
            return fut

        window = PER_THREAD_IN_FLIGHT * self._threads()
        first = [submit() for _ in range(min(window, len(pending)))]
        ac = as_completed(first, loop=self.client.loop)  # not the default client: the caller may hold another
        try:
            for fut in ac:
                self.futures.discard(fut)
                task = meta.pop(fut.key)
                try:
                    yield fut.result()
                except Exception as e:
                    yield {
                        "id": task["spec"].id,
                        "status": "failed",
                        "seconds": 0.0,
                        "timing_s": {},
                        "peak_mb": None,
                        "reason": f"dask worker lost the study ({type(e).__name__})",
                    }
                fut.release()
                if pending:
                    ac.add(submit())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.futures:
            self.client.cancel(list(self.futures))  # queued studies never start; running ones finish atomically
            self.futures.clear()

    def close(self) -> None:
        self.client.close()
