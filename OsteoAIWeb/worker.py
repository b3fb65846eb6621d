"""The screening queue of the upload page: one worker process, uploads screened in the order they came.

The pipeline runs in a separate (spawned) process so the web server stays responsive and a crash of a
screening cannot take it down; the process writes its progress into the upload's ``status.json``,
which the result page polls.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from . import uploads

log = logging.getLogger("osteoai.web")


def screen_upload(upload_dir: str, options: dict) -> dict:
    """In the worker process: screen one upload into ``result/`` (with the scene for the review app and
    ``summary.pdf``), then delete its input. Raises OsteoAIError with the user's message."""
    from OsteoAIBaseLib.imageio import read_volume
    from OsteoAILib.options import validate
    from OsteoAILib.outputs import write_outputs
    from OsteoAILib.pipeline import PipelineOptions, run_pipeline

    from .pdf import write_summary_pdf

    d = Path(upload_dir)
    status = uploads.read_status(d)
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if time.monotonic() - last[0] > 0.3 or fraction >= 1.0:  # a status write per stage step, not per voxel
            last[0] = time.monotonic()
            uploads.update_status(d, state="running", progress=round(0.05 + 0.85 * fraction, 3), message=message)

    uploads.update_status(d, state="running", progress=0.02, message="reading the scan", started=time.time())
    vol = read_volume(d / status["input"])
    out = run_pipeline(vol, validate(PipelineOptions(**options)), progress=progress)
    uploads.update_status(d, progress=0.92, message="writing the results")
    from OsteoAILib.mrml import write_scene  # the MRML bridge writes scene.mrml (the review app opens it)

    write_outputs(out, d / "result", scene=write_scene)
    write_summary_pdf(out.results, d / "result", d / "result" / "summary.pdf")
    remove_input(d, status)  # the scene keeps the volume the review app shows
    return {"category": out.results.diagnosis.category}


def remove_input(d: Path, status: dict | None) -> None:
    """Delete the uploaded scan (a file, or the folder a zip was extracted into)."""
    rel = (status or {}).get("input")
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return
    p = d / rel
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _warm_up() -> None:
    from OsteoAILib.dicom_node.screening import _exit_with_parent

    _exit_with_parent()
    import OsteoAISegmentLib.api  # noqa: F401
    from OsteoAILib import outputs, pipeline  # noqa: F401


class ScreeningQueue:
    def __init__(self, area: Path, options: dict | None = None, screen=screen_upload, warm_up=_warm_up):
        self.area = area
        self.options = options or {}
        self.screen, self.warm_up = screen, warm_up  # tests put a stand-in for the pipeline here
        self.q: queue.Queue[str | None] = queue.Queue()
        self.waiting: list[str] = []
        self.lock = threading.Lock()
        self.pool = None
        self.thread = threading.Thread(target=self._run, name="screening-queue", daemon=True)

    def start(self) -> None:
        for d in uploads.pending(self.area):  # a restarted server screens what was left
            uploads.update_status(d, state="queued", progress=0.0, message="waiting for the screening worker")
            self.submit(d.name)
        self.thread.start()

    def submit(self, upload_id: str) -> None:
        with self.lock:
            if upload_id in self.waiting:  # already queued (e.g. found again by start())
                return
            self.waiting.append(upload_id)
        self.q.put(upload_id)

    def position(self, upload_id: str) -> int | None:
        """How many uploads are ahead of this one (0: being screened), None when not queued."""
        with self.lock:
            return self.waiting.index(upload_id) if upload_id in self.waiting else None

    def stop(self) -> None:
        self.q.put(None)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _pool(self):
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=self.warm_up)
        return self.pool

    def _run(self) -> None:
        while (upload_id := self.q.get()) is not None:
            d = self.area / upload_id
            try:
                self._pool().submit(self.screen, str(d), self.options).result()
                uploads.update_status(d, state="done", progress=1.0, message="done", finished=time.time())
                log.info("upload %s screened", upload_id)
            except BrokenProcessPool:
                self.pool = None
                self._fail(d, "the screening stopped unexpectedly (out of memory?); please try again later")
            except Exception as e:
                from OsteoAIBaseLib.errors import OsteoAIError

                msg = str(e) if isinstance(e, OsteoAIError) else f"the screening failed ({type(e).__name__})"
                if not isinstance(e, OsteoAIError):  # a bug, not the scan: the log gets what it needs
                    log.warning("upload %s: %s", upload_id, "".join(traceback.format_exception_only(e)).strip())
                self._fail(d, msg)
            finally:
                with self.lock:
                    self.waiting.remove(upload_id)

    def _fail(self, d: Path, message: str) -> None:
        # Nothing of the scan stays: only status.json with the message, removed by the retention.
        remove_input(d, uploads.read_status(d))
        shutil.rmtree(d / "result", ignore_errors=True)
        if d.is_dir():
            uploads.update_status(d, state="failed", message=message, finished=time.time())
        log.info("upload %s failed: %s", d.name, message)
