"""Turn batch inputs (folder trees, list files, CSVs with a path column) into a list of studies.

A study is one DICOM series folder or one CT volume file. Its id is a hash of its absolute path, so results
folders never carry a patient name that a path may hold, and the same input maps to the same folder on resume.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.imageio import VOLUME_SUFFIXES

# Volume files that are derived data, not CTs (labelmaps, masks, our own outputs, phantom truth maps).
_NOT_CT = re.compile(r"label|mask|seg|roi|vertebra|bodies|tissue|subregion|totalseg", re.IGNORECASE)
_LIST_SUFFIXES = (".txt", ".lst", ".list")
_CSV_SUFFIXES = (".csv", ".tsv")
PATH_COLUMNS = ("path", "input", "file", "ct")


@dataclass
class StudySpec:
    id: str
    input: str  # absolute path: a DICOM folder or a volume file
    extra: dict = field(default_factory=dict)  # patient-level columns from a CSV (age, sex, ...)


def study_id(path: str | os.PathLike) -> str:
    return hashlib.sha256(f"osteoai-study:{Path(path).resolve()}".encode()).hexdigest()[:16]


def discover(inputs: list[str], exclude: str | os.PathLike | None = None) -> list[StudySpec]:
    """Every study named or found under ``inputs``, in a stable order, without duplicates.
    ``exclude`` (the batch's own output folder) is never searched."""
    skip = Path(exclude).resolve() if exclude else None
    specs: dict[str, StudySpec] = {}
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise InputError(f"batch input not found: {item}")
        if p.is_dir():
            found = [StudySpec(study_id(s), str(s.resolve())) for s in _walk(p.resolve(), skip)]
        elif p.name.lower().endswith(_CSV_SUFFIXES):
            found = _read_csv(p)
        elif p.name.lower().endswith(VOLUME_SUFFIXES):
            found = [StudySpec(study_id(p), str(p.resolve()))]
        else:
            found = _read_list(p)
        for s in found:
            specs.setdefault(s.id, s)
    return list(specs.values())


def _walk(root: Path, skip: Path | None):
    """DICOM series folders and CT volume files under ``root``; a DICOM folder is not searched further
    (the pipeline picks the series inside it); OsteoAI results folders are left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if (skip and (d == skip or skip in d.parents)) or "results.json" in filenames:
            dirnames[:] = []
            continue
        dirnames.sort()
        if _has_dicom(d, filenames):
            dirnames[:] = []
            yield d
            continue
        for name in sorted(filenames):
            if name.lower().endswith(VOLUME_SUFFIXES) and not name.startswith(".") and not _NOT_CT.search(name):
                yield d / name


def _has_dicom(d: Path, filenames: list[str]) -> bool:
    for name in sorted(filenames)[:5]:
        if name.lower().endswith(".dcm"):
            return True
        try:
            with open(d / name, "rb") as f:
                f.seek(128)
                if f.read(4) == b"DICM":
                    return True
        except OSError:
            continue
    return False


def _read_list(p: Path) -> list[StudySpec]:
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise InputError(f"cannot read the list file {p.name} (expected one path per line)") from None
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            path = _resolve(line, p.parent)
            out.append(StudySpec(study_id(path), str(path)))
    return out


def _read_csv(p: Path) -> list[StudySpec]:
    """A path column (path/input/file/ct) and optional patient-level columns, which flow into the results."""
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        raise InputError(f"cannot read the CSV {p.name}") from None
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if p.suffix.lower() == ".tsv" else ","))
    if not rows:
        return []
    cols = {c.strip().lower(): c for c in rows[0] if c}
    path_col = next((cols[c] for c in PATH_COLUMNS if c in cols), None)
    if path_col is None:
        raise InputError(f"{p.name} has no path column (one of: {', '.join(PATH_COLUMNS)})")
    out = []
    for row in rows:
        raw = (row.get(path_col) or "").strip()
        if not raw:
            continue
        path = _resolve(raw, p.parent)
        extra = {
            k.strip().lower(): _value(k.strip().lower(), v)
            for k, v in row.items()
            if k and k != path_col and v not in (None, "")
        }
        out.append(StudySpec(study_id(path), str(path), extra))
    return out


def _resolve(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _value(key: str, v: str):
    v = v.strip()
    if key == "age":
        try:
            return float(v.rstrip("Yy"))
        except ValueError:
            return None
    if key == "sex":
        return {"female": "F", "male": "M", "f": "F", "m": "M"}.get(v.lower(), v.upper()[:1] or None)
    return v
