"""Screening in a separate process: the pipeline's memory and any crash stay out of the node, and the
process is started once and warmed up (imports, model) so a study does not pay for it."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path


def _exit_with_parent() -> None:
    """A node killed with SIGKILL cannot stop its worker: the worker watches for that and exits too."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _warm_up() -> None:
    _exit_with_parent()
    import OsteoAISegmentLib.api  # noqa: F401

    from OsteoAILib import dicom_out, outputs, pipeline  # noqa: F401


# In the worker process: the last screening's output until write_rest() has written its other files.
_LAST: dict = {}


def screen_study(input_dir: str, out_dir: str, options: dict) -> dict:
    """Screen the study folder as ``osteoai run`` would (same series choice): dicom/ and results.json now,
    the other outputs in write_rest() once the DICOM objects are on their way (they cost ~5 s on a
    300-slice CT that the PACS need not wait for). Returns a summary without patient identity; raises
    OsteoAIError for a study it cannot use."""
    from OsteoAIBaseLib.atomic import write_json
    from OsteoAIBaseLib.imageio import read_volume

    from OsteoAILib.dicom_out import write_dicom_outputs
    from OsteoAILib.pipeline import PipelineOptions, run_pipeline

    _LAST.clear()
    vol = read_volume(input_dir)
    out = run_pipeline(vol, PipelineOptions(**options))
    dicom = write_dicom_outputs(out, out_dir, input_dir)
    write_json(Path(out_dir) / "results.json", out.results.to_dict())
    _LAST["out"] = out
    d = out.results.diagnosis
    return {
        "files": [str(p) for k, p in dicom.items() if not k.startswith("ct:")],
        "category": d.category,
        "levels": len(out.results.levels),
        "seconds": round(sum(out.results.timing_s.values()), 1),
    }


def write_rest(out_dir: str) -> None:
    import shutil

    from OsteoAILib.outputs import write_outputs

    def keep_dicom(stage: Path) -> None:  # the folder is committed as a whole: dicom/ goes in with the rest
        if (Path(out_dir) / "dicom").is_dir():
            shutil.copytree(Path(out_dir) / "dicom", stage / "dicom")

    out = _LAST.pop("out", None)
    if out is not None:
        write_outputs(out, out_dir, extra=keep_dicom)


class Screener:
    """One worker process; a crashed worker is replaced and the study that crashed it is reported."""

    def __init__(self, options: dict | None = None):
        self.options = options or {}
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_warm_up)
        pool.submit(int)  # start (and warm) the worker now, not on the first study
        return pool

    def screen(self, input_dir: Path, out_dir: Path) -> dict:
        try:
            return self._pool.submit(screen_study, str(input_dir), str(out_dir), self.options).result()
        except BrokenProcessPool:
            self._pool = self._new_pool()
            raise RuntimeError("the screening process died (out of memory?)") from None

    def write_rest(self, out_dir: Path) -> None:
        try:
            self._pool.submit(write_rest, str(out_dir)).result()
        except BrokenProcessPool:
            self._pool = self._new_pool()
            raise RuntimeError("the screening process died (out of memory?)") from None

    def close(self) -> None:
        # shutdown() alone leaves a busy worker running after the node has gone: end it.
        workers = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for w in workers:
            w.terminate()
            w.join(timeout=10)
