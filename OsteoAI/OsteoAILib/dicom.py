"""Find the CT series in a DICOM folder, check its geometry and read it as a :class:`Volume`.

Headers are read with pydicom (no pixels), pixels with SimpleITK/GDCM (handles compressed transfer
syntaxes and applies RescaleSlope/Intercept).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .imageio import volume_from_sitk

# Kernels meant for soft tissue / standard reconstruction (preferred for densitometry); sharp lung or
# bone kernels add noise and overshoot at cortical edges, which biases trabecular HU.
_SOFT_KERNEL = re.compile(r"^(STANDARD|SOFT|BODY|B[1-4]\d|BR[1-4]\d|I[1-4]\d|FC0\d|FC1\d|FC[2-4]\d|A|B|C)\b", re.I)
_SHARP_KERNEL = re.compile(r"(LUNG|BONE|SHARP|DETAIL|EDGE|B[6-9]\d|BR[6-9]\d|FC5\d|FC8\d|YA|YB|YC)", re.I)
MAX_GANTRY_TILT_DEG = 10.0


def _headers(folder: Path):
    import pydicom

    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    for p in files:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - non-DICOM files (README, DICOMDIR helpers) are skipped
            continue
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            continue
        yield p, ds


def _kernel_rank(kernel: str) -> int:
    if not kernel:
        return 1
    if _SHARP_KERNEL.search(kernel):
        return 2
    return 0 if _SOFT_KERNEL.search(kernel) else 1


def list_series(folder: Path) -> list[dict]:
    groups: dict[str, list] = defaultdict(list)
    for p, ds in _headers(folder):
        groups[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append((p, ds))
    series = []
    for uid, items in groups.items():
        ds0 = items[0][1]
        kernel = getattr(ds0, "ConvolutionKernel", "") or ""
        if not isinstance(kernel, str):
            kernel = "\\".join(kernel)
        series.append(
            {
                "uid": uid,
                "items": items,
                "modality": str(getattr(ds0, "Modality", "")),
                "description": str(getattr(ds0, "SeriesDescription", "")),
                "kernel": kernel,
                "slice_thickness": float(getattr(ds0, "SliceThickness", 0) or 0),
                "n": len(items),
            }
        )
    return series


def choose_series(series: list[dict]) -> tuple[dict, str]:
    """The thinnest standard/soft-kernel CT series with at least 10 slices, and why it was chosen."""
    ct = [s for s in series if s["modality"] == "CT"]
    if not ct:
        mods = sorted({s["modality"] or "?" for s in series})
        raise InputError(f"no CT series in the folder (found modality {', '.join(mods)})")
    usable = [s for s in ct if s["n"] >= 10] or ct
    best = min(usable, key=lambda s: (_kernel_rank(s["kernel"]), s["slice_thickness"] or 99, -s["n"]))
    why = (
        f"series {best['description'] or best['uid'][-12:]!r}: {best['n']} slices, "
        f"{best['slice_thickness']:g} mm, kernel {best['kernel'] or 'unknown'}"
    )
    if len(ct) > 1:
        why += f" (chosen among {len(ct)} CT series: thinnest soft-tissue kernel)"
    return best, why


def _geometry_checks(items) -> tuple[list, list[str]]:
    """Sort slices along the normal; reject gaps; flag tilt and uneven spacing."""
    iop = np.array(items[0][1].ImageOrientationPatient, dtype=float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    pos = np.array([np.array(ds.ImagePositionPatient, dtype=float) for _, ds in items])
    d = pos @ normal
    order = np.argsort(d)
    items = [items[i] for i in order]
    d, pos = d[order], pos[order]
    qc: list[str] = []
    if len(items) < 2:
        raise InputError("the DICOM series holds a single slice: a 3D CT volume is needed")
    gaps = np.diff(d)
    if np.any(gaps < 1e-3):
        raise InputError("the DICOM series has duplicate slice positions (several series mixed?)")
    med = float(np.median(gaps))
    if np.max(gaps) > 1.5 * med:
        n_missing = int(np.round(np.sum(gaps[gaps > 1.5 * med] / med - 1)))
        raise InputError(
            f"the DICOM series has missing slices (about {n_missing} absent; gap of {np.max(gaps):.1f} mm)"
        )
    if np.ptp(gaps) > 0.05 * med:
        qc.append(f"uneven_spacing: slice spacing varies {gaps.min():.2f}-{gaps.max():.2f} mm")
    step = (pos[-1] - pos[0]) / np.linalg.norm(pos[-1] - pos[0])
    tilt = float(np.degrees(np.arccos(np.clip(abs(step @ normal), -1, 1))))
    if tilt > MAX_GANTRY_TILT_DEG:
        raise InputError(f"gantry tilt of {tilt:.1f} degrees is not supported (max {MAX_GANTRY_TILT_DEG:g})")
    if tilt > 0.5:
        qc.append(f"gantry_tilt: slices tilted {tilt:.1f} degrees; geometry approximated as orthogonal")
    return items, qc


def read_dicom_folder(folder: str | Path):
    folder = Path(folder)
    series = list_series(folder)
    if not series:
        raise InputError(f"no DICOM images found in {folder}")
    best, why = choose_series(series)
    items, qc = _geometry_checks(best["items"])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p, _ in items])
    try:
        img = reader.Execute()
    except RuntimeError as e:
        raise InputError(f"cannot decode the DICOM pixels: {str(e).strip().splitlines()[-1][:200]}") from None
    ds0 = items[0][1]
    meta = {
        "source": "dicom",
        "series": why,
        "modality": best["modality"],
        "kvp": float(ds0.KVP) if getattr(ds0, "KVP", None) not in (None, "") else None,
        "kernel": best["kernel"],
        "slice_thickness": best["slice_thickness"] or None,
        "ctdivol": float(ds0.CTDIvol) if getattr(ds0, "CTDIvol", None) not in (None, "") else None,
        "manufacturer": str(getattr(ds0, "Manufacturer", "")),
        "model": str(getattr(ds0, "ManufacturerModelName", "")),
        "age": _age_years(getattr(ds0, "PatientAge", "")),
        "sex": str(getattr(ds0, "PatientSex", "")) or None,
        "load_qc": qc,
    }
    vol = volume_from_sitk(img, meta)
    if vol.array.dtype != np.int16 and np.all(np.mod(vol.array, 1) == 0):
        vol.array = vol.array.astype(np.int16)
    return vol


def _age_years(age: str) -> float | None:
    m = re.fullmatch(r"(\d{1,3})([YMWD])", str(age).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"Y": n, "M": n / 12, "W": n / 52, "D": n / 365}[unit]
