"""Write a phantom: NIfTI volumes (atomic), acquisition sidecar, truth.json, optional DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..atomic import write_json, write_with
from ..imageio import volume_to_sitk
from .params import Phantom


def _write_nifti(vol, array, path: Path, level: int) -> Path:
    img = volume_to_sitk(vol, array)
    # fast zlib level: the noisy CT compresses poorly whatever the level
    return write_with(path, lambda tmp: sitk.WriteImage(img, str(tmp), True, level))


def sidecar_tags(ph: Phantom) -> dict:
    m = ph.volume.meta
    tags = {
        "Manufacturer": m["manufacturer"],
        "ManufacturerModelName": "digital phantom",
        "KVP": float(m["kvp"]),
        "CTDIvol": float(m["ctdivol"]),
        "ConvolutionKernel": m["kernel"],
        "SliceThickness": float(m["slice_thickness"]),
        "BodyPartExamined": "CHEST",
        "PatientSex": m["sex"],
        "PatientAge": f"{int(round(m['age'])):03d}Y",
        "RescaleSlope": 1.0,
        "RescaleIntercept": 0.0,
    }
    if m.get("contrast"):
        tags["ContrastBolusAgent"] = "IODINE (simulated)"
    return tags


def write_all(ph: Phantom, out_dir: Path, dicom: bool = False) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    vol = ph.volume
    files = {
        "ct": _write_nifti(vol, vol.array, out_dir / "ct.nii.gz", 1),
        "vertebrae": _write_nifti(vol, ph.vertebrae.astype(np.int16, copy=False), out_dir / "vertebrae.nii.gz", 6),
        "bodies": _write_nifti(vol, ph.bodies.astype(np.int16, copy=False), out_dir / "bodies.nii.gz", 6),
        "tissues": _write_nifti(vol, ph.tissues, out_dir / "tissues.nii.gz", 6),
        "ct_json": write_json(out_dir / "ct.json", sidecar_tags(ph)),
        "truth": write_json(out_dir / "truth.json", ph.truth),
    }
    if dicom:
        from .dicom_writer import write_dicom_series

        files["dicom"] = write_dicom_series(ph, out_dir / "dicom")
    return files
