"""Small phantom cohorts for the batch tests: a few seconds per study on one core."""

from __future__ import annotations

import csv
from pathlib import Path

from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom
from OsteoAILib.pipeline import PipelineOptions

TINY = dict(matrix=160, spacing=(1.8, 1.8, 2.5), levels="T12-L2")
# the pipeline as `osteoai batch` runs it by default, pinned so the tests do not follow `auto` choices
OPTIONS = PipelineOptions(segmenter="classical", calibration="internal", n_key_images=1)


def make_cohort(root: Path, n: int = 4) -> list[Path]:
    """``n`` phantom studies under root/<patient-like folder>/ct.nii.gz; the folders are named like patients
    on purpose, to check that no name reaches the results. The first one has no sidecar (no age in its header),
    so its age can only come from the cohort CSV."""
    paths = []
    for i in range(n):
        d = root / f"DOE_JANE_{i:02d}"
        write_phantom(make_phantom(PhantomParams(seed=100 + i, age=45 + 10 * i, sex="FM"[i % 2], **TINY)), d)
        for label in ("vertebrae", "bodies", "tissues", "truth"):  # keep the tree lean: only what a PACS gives
            for f in d.glob(f"{label}.*"):
                f.unlink()
        paths.append(d / "ct.nii.gz")
    (paths[0].parent / "ct.json").unlink()
    return paths


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path
