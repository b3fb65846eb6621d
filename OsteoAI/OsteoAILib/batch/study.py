"""One study, run inside a worker (local process or Dask worker): read, screen, write every output into a
hidden folder, then publish it with one rename. A study folder therefore either holds complete results or does
not exist; a kill or Ctrl-C at any moment leaves only a ``.partial-*`` folder that the next run removes.

``study.json`` (written last, inside the folder) records what made the results: the input fingerprint, the
software version and the options. ``--resume`` skips a study only when all three still match.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path

STUDY_FILE = "study.json"
STUDIES = "studies"
PARTIAL = ".partial-"


def fingerprint(path: str) -> str:
    """Names, sizes and modification times of the input's files: cheap (no pixel read), and changes when the
    input is replaced or edited."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def run_key(options, extra: dict) -> str:
    """What, besides the input, decides a study's results: the software version, the pipeline options and the
    patient-level columns (age sets the marrow-fat correction)."""
    from .. import __version__

    blob = json.dumps({"osteoai": __version__, "options": asdict(options), "extra": extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def study_dir(out_root: str | os.PathLike, sid: str) -> Path:
    return Path(out_root) / STUDIES / sid


def is_complete(out_root, spec, options) -> bool:
    """Results exist for this very input, software version and options."""
    d = study_dir(out_root, spec.id)
    try:
        rec = json.loads((d / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not (d / "results.json").is_file() or rec.get("run_key") != run_key(options, spec.extra):
        return False
    try:
        return rec.get("input_fingerprint") == fingerprint(spec.input)
    except OSError:
        return False


def remove_partials(out_root) -> int:
    """Folders an interrupted run left half-written (only call while holding the batch lock)."""
    root = Path(out_root) / STUDIES
    n = 0
    for d in root.glob(PARTIAL + "*") if root.is_dir() else []:
        shutil.rmtree(d, ignore_errors=True)
        n += 1
    return n


def screen_study(task: dict) -> dict:
    """Worker entry point. Never raises for a bad study: returns an outcome with a one-line reason, so one
    failure cannot stop the batch. ``task``: spec, options, out_root, run_id, threads, scene."""
    _tune_worker(task.get("threads", 1))
    spec, options = task["spec"], task["options"]
    final = study_dir(task["out_root"], spec.id)
    tmp = final.parent / f"{PARTIAL}{spec.id}-{uuid.uuid4().hex[:8]}"
    peak = _PeakMemory()
    t0, c0 = time.perf_counter(), time.process_time()
    outcome = {"id": spec.id, "status": "failed", "reason": "", "seconds": 0.0, "timing_s": {}, "peak_mb": None}
    try:
        with peak:
            results = _screen_into(tmp, spec, options, task)
        _publish(tmp, final)
        outcome.update(status="done", timing_s=results.timing_s)
    except Exception as e:
        outcome["reason"] = one_line_reason(e, spec.input)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    outcome["seconds"] = round(time.perf_counter() - t0, 3)
    # CPU seconds, all threads: what a study costs on a dedicated core, whatever else loads the machine
    outcome["cpu_s"] = round(time.process_time() - c0, 3)
    outcome["peak_mb"] = peak.peak_mb
    return outcome


def _screen_into(tmp: Path, spec, options, task):
    from OsteoAIBaseLib import atomic
    from OsteoAIBaseLib.imageio import read_volume

    from ..outputs import write_outputs
    from ..pipeline import run_pipeline

    t0 = time.perf_counter()
    finger = fingerprint(spec.input)  # before reading: an input replaced mid-run then fails the next resume check
    vol = read_volume(spec.input)
    for key in ("age", "sex"):  # the header wins; the cohort file fills what it lacks
        if vol.meta.get(key) is None and spec.extra.get(key) is not None:
            vol.meta[key] = spec.extra[key]
    t_read = time.perf_counter() - t0
    out = run_pipeline(vol, options)
    out.results.timing_s = {"read": round(t_read, 3), **out.results.timing_s}
    t1 = time.perf_counter()
    scene = None
    if task.get("scene", False):  # the MRML bridge writes it; it needs slicer-core, imported only when asked for
        from ..mrml import write_scene as scene
    write_outputs(out, tmp, scene=scene)
    out.results.timing_s["write"] = round(time.perf_counter() - t1, 3)
    atomic.write_json(
        tmp / STUDY_FILE,
        {
            "study_id": spec.id,
            "input_fingerprint": finger,
            "run_key": run_key(options, spec.extra),
            "run_id": task["run_id"],
            "extra": spec.extra,
            "timing_s": out.results.timing_s,
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    return out.results


def _publish(tmp: Path, final: Path) -> None:
    """Swap the finished folder in. A stale folder (older version or input) is moved aside first because a
    directory cannot be renamed over a non-empty one; it is deleted only after the new one is in place."""
    old = None
    if final.exists():
        old = final.parent / f"{PARTIAL}old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def one_line_reason(e: BaseException, input_path: str) -> str:
    """The error as one line, with the input's path replaced (a path can hold a patient's name)."""
    from OsteoAIBaseLib.errors import OsteoAIError

    msg = " ".join(str(e).split()) or type(e).__name__
    for s in sorted({input_path, Path(input_path).name, Path(input_path).parent.name}, key=len, reverse=True):
        if len(s) > 2:
            msg = msg.replace(s, "<input>")
    if isinstance(e, MemoryError):
        msg = "out of memory"
    elif not isinstance(e, OsteoAIError):
        msg = f"{type(e).__name__}: {msg}"
    return msg[:300]


_TUNED = False


def _tune_worker(threads: int) -> None:
    """Once per worker process. One study per core: a study's libraries must not each start a thread per core,
    or N workers on N cores run N^2 threads; env vars act on libraries not yet imported, SimpleITK and torch are
    told directly. And glibc's malloc keeps freed large arrays for reuse: a Dask nanny starts workers with
    MALLOC_TRIM_THRESHOLD_ set, which turns that off, so every big numpy temporary is a fresh mmap and its page
    faults cost ~10% more CPU per study (measured); the thresholds below restore the reuse."""
    global _TUNED
    if _TUNED:
        return
    n = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(n)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: arrays under 32 MB come from the reusable heap
            libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: give memory back to the OS only past 256 MB free
        except (OSError, AttributeError):  # not glibc (musl): nothing to tune
            pass
    _TUNED = True


class _PeakMemory:
    """Peak resident memory of this process while a study runs (sampled; the scaling table needs it)."""

    def __init__(self, every_s: float = 0.05):
        self.every_s, self.peak_mb = every_s, None
        self._stop = threading.Event()

    def __enter__(self):
        import psutil

        proc = psutil.Process()
        self.peak = proc.memory_info().rss

        def sample():
            while not self._stop.wait(self.every_s):
                self.peak = max(self.peak, proc.memory_info().rss)

        self._t = threading.Thread(target=sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak_mb = round(self.peak / 2**20, 1)
        return False
