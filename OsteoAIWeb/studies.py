"""Result folders under ``--data``: single ``osteoai run`` outputs, batch ``studies/<id>/`` folders and
finished uploads, each named by a hash of its path (a folder name may hold a patient's name)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from OsteoAILib.results import Results

from .reviews import latest_review

SKIP_DIRS = {"input", "key_images", "reviews", "dicom", "phantom"}


@dataclass
class Study:
    id: str
    dir: Path

    @property
    def has_scene(self) -> bool:
        return (self.dir / "scene.mrml").is_file()

    def results(self) -> Results:
        return Results.from_dict(json.loads((self.dir / "results.json").read_text()))


def study_id(data: Path, d: Path) -> str:
    rel = d.resolve().relative_to(data.resolve()).as_posix()
    return hashlib.sha256(rel.encode()).hexdigest()[:12]


def find_studies(data: Path) -> dict[str, Study]:
    """Every folder under ``data`` with a ``results.json``, by id (sorted by path)."""
    found = {}
    for root, dirs, files in os.walk(data):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in SKIP_DIRS)
        if "results.json" in files:
            d = Path(root)
            found[study_id(data, d)] = Study(study_id(data, d), d)
    return found


def summary(study: Study) -> dict:
    """One row of the study list: no path, no name; what a reviewer sorts by."""
    try:
        r = study.results()
    except (OSError, ValueError, TypeError, KeyError):
        return {
            "id": study.id,
            "vbmd": None,
            "category": "unreadable results.json",
            "levels": "",
            "qc": "",
            "review": "",
            "scene": False,
        }
    d = r.diagnosis
    rev = latest_review(study.dir)
    qc = sorted({f.split(":")[0] for f in r.qc} | {f.split(":")[0] for lv in r.levels for f in lv.qc})
    return {
        "id": study.id,
        "vbmd": None if d.vbmd_mg_cm3 is None else round(float(d.vbmd_mg_cm3), 1),
        "category": d.category or "no diagnosis",
        "levels": ", ".join(d.levels or []),
        "qc": ", ".join(qc),
        "review": f"{rev['decision']} by {rev['reviewer']}" if rev else "not reviewed",
        "scene": study.has_scene,
    }
