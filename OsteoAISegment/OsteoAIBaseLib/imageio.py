"""Read CT volumes (NIfTI, NRRD, MHA, DICOM folders) into :class:`Volume`; write labelmaps back.

Everything goes through SimpleITK so that geometry is handled one way only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import write_with
from .errors import InputError, reader_message
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
    """Read a file or a DICOM folder. Raises InputError with a one-line reason on failure.

    Messages and ``meta`` name the input by its kind only: file names often are patient names.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("input not found: no such file or folder")
    if p.is_dir():
        from .dicom import read_dicom_folder

        try:
            return read_dicom_folder(p)
        except OSError as e:  # an unreadable file or sub-folder, a vanished file
            raise InputError(f"cannot read the input folder: {reader_message(OSError(e.strerror), p)}") from None
    if not p.name.lower().endswith(VOLUME_SUFFIXES):
        raise InputError("unsupported input file type (expected NIfTI, NRRD, MHA or a DICOM folder)")
    kind = _kind(p)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as e:
        raise InputError(f"cannot read the {kind} input: {reader_message(e, p)}") from None
    if img.GetDimension() != 3:
        raise InputError(f"the input is a {img.GetDimension()}D image: a 3D CT volume is needed")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the input has {img.GetNumberOfComponentsPerPixel()} components per voxel: not a CT")
    meta = {"source": kind, "format": p.suffix.lstrip("."), "load_qc": [], "identifiers": {"file_name": p.name}}
    sidecar = p.parent / "ct.json"  # acquisition tags beside a converted volume (DICOM keywords)
    if sidecar.exists():
        import json

        try:
            meta.update(acquisition_meta(json.loads(sidecar.read_text())))
        except (ValueError, TypeError, AttributeError, OSError):
            pass
        if meta.get("kvp") is not None:
            meta["kvp_source"] = "sidecar"
    vol = volume_from_sitk(img, meta)
    if kind == "NIfTI":
        _nifti_checks(p, vol)
    return vol


def _kind(p: Path) -> str:
    name = p.name.lower()
    return "NIfTI" if name.endswith((".nii", ".nii.gz")) else "NRRD" if name.endswith((".nrrd", ".nhdr")) else "MHA"


def _nifti_checks(p: Path, vol: Volume) -> None:
    """What ITK's NIfTI reader gets wrong, checked against the header as the NIfTI standard reads it.

    - NaN and Inf voxels: ITK reads them as 0, a plausible HU (water); here they are refused.
    - A negative pixdim: ITK flips that axis even where the sform or the quaternion already orients it;
      the standard (nifti1_io, nibabel) uses the magnitude. The geometry is set from nibabel's affine.
    - A zero pixdim: ITK reads 1 mm. Refused unless the sform gives the voxel size.
    """
    try:
        import nibabel as nib
        from nibabel.openers import ImageOpener

        with ImageOpener(str(p)) as f:
            raw = nib.Nifti1Header.from_fileobj(f, check=False)  # as stored, before nibabel's fixes
        img = nib.load(str(p))
    except Exception:
        return
    if np.issubdtype(raw.get_data_dtype(), np.floating):
        data = np.asanyarray(img.dataobj)
        if data.ndim >= 3:
            finite = np.isfinite(data.reshape(data.shape[0], data.shape[1], data.shape[2], -1))
            bad = ~finite.all(axis=(0, 1, 3))  # per slice k (nibabel's third axis)
            if bad.any():
                raise InputError(
                    f"the volume contains NaN or infinite values in {int(bad.sum())} of {bad.size} slices: no HU there"
                )
    pixdim = np.asarray(raw["pixdim"][1:4], dtype=float)
    if np.all(pixdim > 0):
        return
    if np.any(pixdim == 0) and not int(raw["sform_code"]) > 0:
        raise InputError(
            "the NIfTI header's voxel size (pixdim) is zero or negative and no affine gives it: "
            "the voxel geometry is unknown"
        )
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise InputError("the NIfTI header has a non-finite orientation: the voxel geometry is unknown")
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    m = ras_to_lps @ affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if np.any(spacing <= 0):
        raise InputError("the NIfTI header has a zero voxel size: the voxel geometry is unknown")
    direction, origin = m / spacing, ras_to_lps @ affine[:3, 3]
    if (
        np.allclose(direction, vol.direction, atol=1e-4)
        and np.allclose(spacing, vol.spacing, rtol=1e-4)
        and np.allclose(origin, vol.origin, atol=1e-3)
    ):
        return
    vol.spacing, vol.origin, vol.direction = tuple(spacing), tuple(origin), direction
    vol.meta.setdefault("load_qc", []).append(
        "negative_spacing: the NIfTI header has negative pixdim; orientation taken from its affine (NIfTI rule)"
    )


def acquisition_meta(tags: dict) -> dict:
    """DICOM-keyword tags (as in a ct.json sidecar) -> the meta keys the pipeline reads."""

    def num(key):
        try:
            v = float(tags[key])
        except (KeyError, TypeError, ValueError):
            return None
        return v if np.isfinite(v) else None

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
    A volume already on a canonical grid shares its array with the result (stages never write into it).
    """
    if _already_canonical(vol):
        # DICOMOrient would return the same grid after three copies of the array (~1 s at 512x512x300)
        can = Volume(vol.array, vol.spacing, vol.origin, vol.direction.copy(), dict(vol.meta))
        can.meta["canonical_residual_deg"] = 0.0
        return can
    img = volume_to_sitk(vol)
    out = sitk.DICOMOrient(img, "LPS")
    can = volume_from_sitk(out, dict(vol.meta))
    cos = np.clip(np.abs(np.diag(can.direction)), -1, 1)
    can.meta["canonical_residual_deg"] = float(np.degrees(np.arccos(cos.min())))
    return can


# dtypes that pass through SimpleITK unchanged (a bool or float16 array comes back as another type)
_SITK_DTYPES = {np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")} | {
    np.dtype("float32"),
    np.dtype("float64"),
}


def _already_canonical(vol: Volume) -> bool:
    a = vol.array
    return (
        np.array_equal(vol.direction, np.eye(3))
        and a.dtype in _SITK_DTYPES
        and a.dtype.isnative
        and a.ndim == 3
        and a.flags.c_contiguous
    )


def from_canonical(labels: np.ndarray, canonical: Volume, original: Volume) -> np.ndarray:
    """Map a labelmap on the canonical grid back onto the original input grid.

    The canonical grid is an axis permutation/flip of the original, so this is normally an exact
    re-ordering; only an input whose grid cannot be matched that way is resampled (nearest neighbour).
    """
    if (
        labels.shape == original.shape
        and np.allclose(canonical.direction, original.direction)
        and np.allclose(canonical.origin, original.origin, atol=1e-3)
    ):
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
