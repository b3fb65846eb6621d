"""The node's work folder: every state a study passes through is a folder, and every transition one
rename, so a node killed at any moment restarts with each study in exactly one state."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

STATES = ("incoming", "jobs", "results", "outbox", "failed")


def study_key(study_uid: str) -> str:
    return hashlib.sha256(study_uid.encode()).hexdigest()[:12]


def instance_name(sop_uid: str) -> str:
    return hashlib.sha256(sop_uid.encode()).hexdigest()[:20] + ".dcm"


class WorkDir:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for s in STATES:
            (self.root / s).mkdir(parents=True, exist_ok=True)
        # Held while an instance is written into incoming/ and while a study leaves it, so no instance
        # lands in a study folder that is being moved on.
        self.lock = threading.Lock()

    def path(self, state: str, name: str = "") -> Path:
        return self.root / state / name if name else self.root / state

    def store(self, study_uid: str, sop_uid: str, data: bytes) -> str:
        key = study_key(study_uid)
        with self.lock:
            d = self.path("incoming", key)
            d.mkdir(exist_ok=True)
            tmp = d / f".{instance_name(sop_uid)}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, d / instance_name(sop_uid))
        return key

    def incoming(self) -> dict[str, float]:
        """Study key -> wall-clock time of its last arrival (the folder's mtime: it survives a restart)."""
        out = {}
        for d in self.path("incoming").iterdir():
            if d.is_dir():
                out[d.name] = d.stat().st_mtime
        return out

    def start_job(self, key: str) -> str | None:
        """incoming/<key> -> jobs/<job>/input; the job name adds a counter: a study sent again later is
        screened again, as a new job."""
        with self.lock:
            src = self.path("incoming", key)
            if not src.is_dir():
                return None
            job = f"{key}-{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 1000000:06d}"
            (self.path("jobs", job)).mkdir()
            os.replace(src, self.path("jobs", job) / "input")
        return job

    def pending_jobs(self) -> list[str]:
        return sorted(d.name for d in self.path("jobs").iterdir() if d.is_dir() and (d / "input").is_dir())

    def finish_job(self, job: str, out_dir: Path, dicom_files: list[Path]) -> None:
        """Outputs into results/ and the DICOM objects into outbox/, then the patient images go."""
        box = self.path("outbox", f".{job}.tmp")
        shutil.rmtree(box, ignore_errors=True)
        box.mkdir()
        for f in dicom_files:
            shutil.copy2(f, box / f.name)
        res = self.path("results", job)
        shutil.rmtree(res, ignore_errors=True)
        os.replace(out_dir, res)
        os.replace(box, self.path("outbox", job))
        self._remove(self.path("jobs", job))

    def _remove(self, d: Path) -> None:
        """Rename first, then delete: a half-deleted job folder never looks like a job with missing slices."""
        trash = d.parent / f".trash-{d.name}"
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def recover(self) -> None:
        """After a crash: drop half-written leftovers and jobs whose outputs already reached the outbox."""
        for state in ("jobs", "outbox", "incoming"):
            for d in self.path(state).iterdir():
                if d.name.startswith("."):
                    shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
        for d in self.path("incoming").iterdir():
            for f in d.glob(".*.tmp"):
                f.unlink(missing_ok=True)
        for job in self.pending_jobs():
            if self.path("outbox", job).is_dir() or (self.path("results", job) / "forwarded.json").exists():
                self._remove(self.path("jobs", job))

    def fail_job(self, job: str, reason: str) -> None:
        dst = self.path("failed", job)
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(self.path("jobs", job), dst)
        (dst / "reason.txt").write_text(reason + "\n")

    def outbox(self) -> list[str]:
        return sorted(d.name for d in self.path("outbox").iterdir() if d.is_dir() and not d.name.startswith("."))

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for d in self.path(s).iterdir() if d.is_dir() and not d.name.startswith(".")) for s in STATES}

    def write_status(self, status: dict) -> None:
        tmp = self.root / ".status.json.tmp"
        tmp.write_text(json.dumps(status, indent=1))
        os.replace(tmp, self.root / "status.json")
