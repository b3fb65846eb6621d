"""Read CT volumes (NIfTI, NRRD, MHA, DICOM folders) into :class:`Volume`; write labelmaps back.

Everything goes through SimpleITK so that geometry is handled one way only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import write_with
from .errors import InputError
from .volume import Volume

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def volume_from_sitk(img: sitk.Image, meta: dict | None = None) -> Volume:
    arr = sitk.GetArrayFromImage(img)
    return Volume(arr, img.GetSpacing(), img.GetOrigin(), np.array(img.GetDirection()).reshape(3, 3), meta or {})


def volume_to_sitk(vol: Volume, array: np.ndarray | None = None) -> sitk.Image:
    img = sitk.GetImageFromArray(vol.array if array is None else array)
    img.SetSpacing(vol.spacing)
    img.SetOrigin(vol.origin)
    img.SetDirection(tuple(np.asarray(vol.direction).ravel()))
    return img


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a file or a DICOM folder. Raises InputError with a one-line reason on failure."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    if p.is_dir():
        from .dicom import read_dicom_folder

        return read_dicom_folder(p)
    if not p.name.lower().endswith(VOLUME_SUFFIXES):
        raise InputError(f"unsupported file type: {p.name} (expected NIfTI, NRRD, MHA or a DICOM folder)")
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as e:
        raise InputError(f"cannot read {p.name}: {str(e).strip().splitlines()[-1][:200]}") from None
    if img.GetDimension() != 3:
        raise InputError(f"{p.name} is a {img.GetDimension()}D image: a 3D CT volume is needed")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{p.name} has {img.GetNumberOfComponentsPerPixel()} components per voxel: not a CT")
    meta = {"source": p.name, "format": p.suffix.lstrip(".")}
    sidecar = p.parent / "ct.json"  # acquisition tags beside a converted volume (DICOM keywords)
    if sidecar.exists():
        import json

        try:
            meta.update(acquisition_meta(json.loads(sidecar.read_text())))
        except (ValueError, TypeError):
            pass
    return volume_from_sitk(img, meta)


def acquisition_meta(tags: dict) -> dict:
    """DICOM-keyword tags (as in a ct.json sidecar) -> the meta keys the pipeline reads."""

    def num(key):
        try:
            return float(tags[key])
        except (KeyError, TypeError, ValueError):
            return None

    age = str(tags.get("PatientAge", "")).strip()
    return {
        "modality": tags.get("Modality", "CT"),
        "kvp": num("KVP"),
        "kernel": tags.get("ConvolutionKernel"),
        "slice_thickness": num("SliceThickness"),
        "ctdivol": num("CTDIvol"),
        "manufacturer": tags.get("Manufacturer"),
        "model": tags.get("ManufacturerModelName"),
        "age": float(age[:-1]) if age[:-1].isdigit() and age.endswith("Y") else None,
        "sex": tags.get("PatientSex"),
    }


def write_volume(vol: Volume, path: str | os.PathLike, array: np.ndarray | None = None) -> Path:
    """Write ``array`` (default ``vol.array``) on ``vol``'s grid, atomically, compressed."""
    img = volume_to_sitk(vol, array)
    return write_with(path, lambda tmp: sitk.WriteImage(img, str(tmp), useCompression=True))


def to_canonical(vol: Volume) -> Volume:
    """Permute/flip axes so that i -> patient left, j -> posterior, k -> superior (see volume.py).

    Only axis permutations and flips are applied (no resampling), so values are untouched and the
    transform is exactly invertible with :func:`from_canonical`. A residual oblique rotation (gantry
    tilt, rotated acquisition) is kept in ``direction``; meta['canonical_residual_deg'] reports it.
    """
    img = volume_to_sitk(vol)
    out = sitk.DICOMOrient(img, "LPS")
    can = volume_from_sitk(out, dict(vol.meta))
    cos = np.clip(np.abs(np.diag(can.direction)), -1, 1)
    can.meta["canonical_residual_deg"] = float(np.degrees(np.arccos(cos.min())))
    return can


def from_canonical(labels: np.ndarray, canonical: Volume, original: Volume) -> np.ndarray:
    """Map a labelmap on the canonical grid back onto the original input grid.

    The canonical grid is an axis permutation/flip of the original, so this is normally an exact
    re-ordering; only an input whose grid cannot be matched that way is resampled (nearest neighbour).
    """
    if (labels.shape == original.shape and np.allclose(canonical.direction, original.direction)
            and np.allclose(canonical.origin, original.origin, atol=1e-3)):
        return labels  # the input was already canonical
    src = volume_to_sitk(canonical, labels)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(tuple(original.direction.ravel()))
    back = sitk.DICOMOrient(src, code)
    if (
        back.GetSize() == tuple(reversed(original.shape))
        and np.allclose(back.GetOrigin(), original.origin, atol=1e-3)
        and np.allclose(back.GetDirection(), original.direction.ravel(), atol=1e-6)
    ):
        return sitk.GetArrayFromImage(back)
    ref = volume_to_sitk(original, np.zeros(original.shape, dtype=labels.dtype))
    res = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, src.GetPixelID())
    return sitk.GetArrayFromImage(res)
