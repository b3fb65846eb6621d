"""Screening in a separate process: the pipeline's memory and any crash stay out of the node, and the
process is started once and warmed up (imports, model) so a study does not pay for it."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path


def _warm_up() -> None:
    import OsteoAISegmentLib.api  # noqa: F401

    from OsteoAILib import dicom_out, outputs, pipeline  # noqa: F401


def screen_study(input_dir: str, out_dir: str, options: dict) -> dict:
    """Screen the study folder as ``osteoai run`` would (same series choice), writing the usual outputs
    and dicom/. Returns a summary without patient identity. Raises OsteoAIError for a study it cannot use."""
    from OsteoAILib.dicom_out import write_dicom_outputs
    from OsteoAILib.imageio import read_volume
    from OsteoAILib.outputs import write_outputs
    from OsteoAILib.pipeline import PipelineOptions, run_pipeline

    vol = read_volume(input_dir)
    out = run_pipeline(vol, PipelineOptions(**options))
    dicom = write_dicom_outputs(out, out_dir, input_dir)
    write_outputs(out, out_dir)
    d = out.results.diagnosis
    return {
        "files": [str(p) for k, p in dicom.items() if not k.startswith("ct:")],
        "category": d.category,
        "levels": len(out.results.levels),
        "seconds": round(sum(out.results.timing_s.values()), 1),
    }


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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
