"""Checks on a loaded volume before any stage runs: bad input gets a clear error, doubtful input a QC flag."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .volume import Volume

MIN_SLICES = 8
SPACING_RANGE_MM = (0.2, 10.0)


def validate(vol: Volume) -> list[str]:
    """Raise InputError for unusable input; return QC flags for usable-but-doubtful input."""
    qc: list[str] = list(vol.meta.get("load_qc", []))
    modality = (vol.meta.get("modality") or "CT").upper()
    if modality != "CT":
        raise InputError(f"modality is {modality}, not CT: vBMD needs a CT in Hounsfield units")
    a = vol.array
    if a.ndim != 3 or min(a.shape) < 2:
        raise InputError(f"volume of shape {a.shape} is not 3D")
    if a.shape[0] < MIN_SLICES:
        raise InputError(f"only {a.shape[0]} slices: at least {MIN_SLICES} are needed to see a vertebra")
    lo, hi = SPACING_RANGE_MM
    if not all(lo <= s <= hi for s in vol.spacing):
        raise InputError(f"voxel spacing {tuple(round(s, 3) for s in vol.spacing)} mm is outside {lo}-{hi} mm")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise InputError("the volume contains NaN or infinite values")
    amin, amax = float(a.min()), float(a.max())
    if amax - amin < 1:
        raise InputError("the volume is constant: no image content")
    if amin > -500 or amax < 300:
        qc.append(
            f"not_hu: value range {amin:.0f}..{amax:.0f} does not look like CT Hounsfield units "
            "(no air or no bone)"
        )
    if vol.meta.get("canonical_residual_deg", 0) > 1.0:
        qc.append(f"oblique: volume is rotated {vol.meta['canonical_residual_deg']:.1f} degrees from axial")
    st = vol.meta.get("slice_thickness") or vol.spacing[2]
    if st and st > 3.0:
        qc.append(f"thick_slices: {st:g} mm slices; partial-volume averaging lowers precision")
    return qc
