"""A small phantom written as a DICOM series, and dciodvfy's errors on a file (test_dicom_out, test_dicom_node)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SMALL = dict(levels="T11-L2", matrix=128, spacing=(1.5, 1.5, 2.0))


def small_phantom_dicom(folder: Path, seed: int = 5) -> Path:
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    write_phantom(make_phantom(PhantomParams(seed=seed, **SMALL)), folder, dicom=True)
    return folder / "dicom"


def dciodvfy_errors(path: Path) -> list[str]:
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]
