"""An output folder that holds one complete result or none, never a mixture.

- :func:`check_output_dir` runs before any work: the folder is (or can be made) a writable folder with
  room for a result, so a bad ``--out`` fails in a second, not after the whole pipeline.
- :func:`output_lock` is one lock per folder: a second run into the same folder stops at once.
- :func:`commit` moves a staged result into place: it removes ``results.json`` first, then every file of
  the previous result (listed in the folder's manifest, or known by name), moves the new files in and
  writes ``results.json`` last. Whatever moment a run is killed, a folder with ``results.json`` holds
  exactly the files that ``results.json`` lists, with the sha256 it gives.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from OsteoAIBaseLib.atomic import write_json
from OsteoAIBaseLib.errors import OutputError, printable

LOCK_NAME = ".osteoai.lock"
MANIFEST_NAME = ".osteoai-files.json"  # every file of the committed result (kept while a commit runs)
STAGING_PREFIX = ".osteoai-staging-"
RESULTS_NAME = "results.json"
MIN_FREE_BYTES = 64 << 20
# Files an older version wrote without a manifest: removed with the result they belong to.
KNOWN_OUTPUTS = ("results.csv", "radiomics.csv", "vertebrae.nii.gz", "trabecular_rois.nii.gz",
                 "vertebrae.seg.nrrd", "trabecular_rois.seg.nrrd", "scene.mrml")  # fmt: skip
KNOWN_DIRS = {"key_images": "*.png", "dicom": "**/*.dcm"}

_HELD: set[Path] = set()  # folders whose lock this process holds


def _why(e: OSError) -> str:
    if e.strerror and e.errno and e.strerror != os.strerror(e.errno):
        return printable(e.strerror)  # our own explanation (e.g. a file that did not read back)
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return "no space left on the disk"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only or not writable)"
    return printable(e.strerror or str(e))


def check_output_dir(out_dir: str | os.PathLike, need_bytes: int = MIN_FREE_BYTES) -> Path:
    """Create ``out_dir`` if needed and prove it takes a file; OutputError with one line otherwise."""
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise OutputError("the output path is a file, not a folder")
    for parent in d.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError("the output path lies below a file, not a folder")
            break
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".osteoai-probe-", dir=d)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write into the output folder: {_why(e)}") from None
    free = shutil.disk_usage(d).free
    if free < need_bytes:
        raise OutputError(
            f"only {free / 2**20:.0f} MB free in the output folder; a result needs about {need_bytes / 2**20:.0f} MB"
        )
    return d


@contextmanager
def output_lock(out_dir: str | os.PathLike):
    """Hold the folder's lock for the block; OutputError at once when another run holds it."""
    d = Path(out_dir).resolve()
    if d in _HELD:  # re-entered by the same run (screen -> write_outputs)
        yield d
        return
    try:
        f = open(d / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the whole block
    except OSError as e:
        raise OutputError(f"cannot lock the output folder: {_why(e)}") from None
    try:
        try:
            _lock(f)
        except OSError:
            raise OutputError(
                "another osteoai run is writing into this output folder; wait for it or choose another --out"
            ) from None
        _HELD.add(d)
        try:
            _remove_stale_staging(d)
            yield d
        finally:
            _HELD.discard(d)
            _unlock(f)
    finally:
        f.close()


def _lock(f) -> None:
    try:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # Windows
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)


def _unlock(f) -> None:
    try:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except ImportError:
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


def _remove_stale_staging(d: Path) -> None:
    """Staging folders of runs that were killed (only ever touched under the lock)."""
    for p in d.glob(STAGING_PREFIX + "*"):
        shutil.rmtree(p, ignore_errors=True)


def new_staging(d: Path) -> Path:
    s = d / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    s.mkdir()
    return s


def staged_files(stage: Path) -> list[str]:
    """Relative POSIX paths of every file under ``stage``."""
    return sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())


def _previous_files(d: Path) -> set[str]:
    files: set[str] = set()
    try:
        files.update(json.loads((d / MANIFEST_NAME).read_text(encoding="utf-8")).get("files", []))
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    files.update(n for n in KNOWN_OUTPUTS if (d / n).is_file())
    for sub, pattern in KNOWN_DIRS.items():
        if (d / sub).is_dir():
            files.update(p.relative_to(d).as_posix() for p in (d / sub).glob(pattern))
    return {f for f in files if _inside(d, f)}


def _inside(d: Path, rel: str) -> bool:
    """A manifest entry is only ever a path inside the folder (a tampered manifest deletes nothing else)."""
    try:
        return not Path(rel).is_absolute() and (d / rel).resolve().is_relative_to(d.resolve())
    except (OSError, ValueError):
        return False


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_empty_dirs(d: Path, removed: set[str]) -> None:
    """Folders that held only files of the previous result (deepest first)."""
    dirs = {p for rel in removed for p in Path(rel).parents if str(p) != "."}
    for rel in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            (d / rel).rmdir()
        except OSError:
            pass  # not empty: it holds new or the user's files


def commit(stage: Path, d: Path, results: dict) -> list[str]:
    """Replace the folder's result by the staged one (see the module docstring); returns the new files."""
    new = [f for f in staged_files(stage) if f != RESULTS_NAME]
    old = _previous_files(d)
    try:
        (d / RESULTS_NAME).unlink(missing_ok=True)  # from here the folder holds no result
        _fsync_dir(d)
        write_json(d / MANIFEST_NAME, {"files": sorted(old | set(new)), "complete": False})
        for rel in sorted(old - set(new)):
            (d / rel).unlink(missing_ok=True)
        for rel in new:
            target = d / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, target)
        _remove_empty_dirs(d, old)
        write_json(d / MANIFEST_NAME, {"files": new, "complete": True})
        write_json(stage / RESULTS_NAME, results)
        os.replace(stage / RESULTS_NAME, d / RESULTS_NAME)
        _fsync_dir(d)
    except OSError as e:
        raise OutputError(f"cannot write the results: {_why(e)}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return new + [RESULTS_NAME]
