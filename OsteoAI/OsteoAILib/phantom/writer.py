"""Write a phantom: NIfTI volumes (atomic), acquisition sidecar, truth.json, optional DICOM series."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from OsteoAIBaseLib.atomic import write_json, write_with
from OsteoAIBaseLib.imageio import volume_to_sitk

from .params import Phantom


def _write_nifti(vol, array, path: Path, level: int) -> Path:
    img = volume_to_sitk(vol, array)
    return write_with(path, lambda tmp: sitk.WriteImage(img, str(tmp), True, level))


def _gzip_members(data: memoryview, level: int = 1, chunk: int = 8 << 20) -> list[bytes]:
    """Compress in independent gzip members on threads (zlib releases the GIL); a concatenation
    of members is a valid .gz file for zlib/ITK, nibabel and gzip alike."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        return c.compress(data[i : i + chunk]) + c.flush()

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as ex:
        return list(ex.map(one, range(0, len(data), chunk)))


def _write_ct_nifti(vol, path: Path) -> Path:
    """The noisy CT is large and compresses poorly: write it with nibabel's header and a fast
    multi-threaded level-1 gzip instead of ITK's single-threaded writer (same geometry)."""
    import nibabel as nib

    aff = vol.ijk_to_ras()
    img = nib.Nifti1Image(np.zeros((1, 1, 1), vol.array.dtype), aff)
    hdr = img.header
    hdr.set_data_shape(vol.array.shape[::-1])
    hdr.set_zooms(vol.spacing)
    hdr.set_qform(aff, code=1)
    hdr.set_sform(aff, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["vox_offset"] = 352
    head = hdr.binaryblock + b"\x00" * 4  # no extensions
    body = memoryview(np.ascontiguousarray(vol.array)).cast("B")  # C order [k, j, i] = NIfTI's i-fastest

    def writer(tmp: Path):
        with open(tmp, "wb") as f:
            c = zlib.compressobj(1, zlib.DEFLATED, 31)
            f.write(c.compress(head) + c.flush())
            for m in _gzip_members(body):
                f.write(m)

    return write_with(path, writer)


def sidecar_tags(ph: Phantom) -> dict:
    m = ph.volume.meta
    tags = {
        "Modality": "CT",
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
        "ct": _write_ct_nifti(vol, out_dir / "ct.nii.gz"),
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
