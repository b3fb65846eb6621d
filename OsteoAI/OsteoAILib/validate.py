"""Checks on a loaded volume before any stage runs: bad input gets a clear error, doubtful input a QC flag."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .volume import Volume

MIN_SLICES = 8
SPACING_RANGE_MM = (0.2, 10.0)
# Every CT of a body holds air or fat below -50 HU; MR, PET and CT without its rescale to HU do not.
NOT_CT_BELOW_HU = -50.0
NOT_CT_MIN_FRACTION = 0.005
# A voxel that jumps this far from the mean of the slices above and below is no anatomy (edges move
# less between slices inside a trabecular ROI); this many of them in one slice of an ROI make it corrupt.
SPIKE_HU = 500.0
SPIKE_FRACTION = 0.03


def validate(vol: Volume) -> list[str]:
    """Raise InputError for unusable input; return QC flags for usable-but-doubtful input."""
    qc: list[str] = list(vol.meta.get("load_qc", []))
    modality = str(vol.meta.get("modality") or "CT").upper()
    if modality != "CT":
        raise InputError(f"modality is {modality[:16]}, not CT: vBMD needs a CT in Hounsfield units")
    a = vol.array
    if a.ndim != 3 or min(a.shape) < 2:
        raise InputError(f"volume of shape {a.shape} is not 3D")
    if a.shape[0] < MIN_SLICES:
        raise InputError(f"only {a.shape[0]} slices: at least {MIN_SLICES} are needed to see a vertebra")
    lo, hi = SPACING_RANGE_MM
    if not all(np.isfinite(s) and lo <= s <= hi for s in vol.spacing):
        raise InputError(f"voxel spacing {tuple(round(s, 3) for s in vol.spacing)} mm is outside {lo}-{hi} mm")
    if not (np.all(np.isfinite(vol.origin)) and np.all(np.isfinite(vol.direction))):
        raise InputError("the volume's origin or orientation is not finite: its geometry is unknown")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a).all(axis=(1, 2))
        if bad.any():
            raise InputError(f"the volume contains NaN or infinite values in {int(bad.sum())} of {a.shape[0]} "
                             "slices: no HU there")
    amin, amax = float(a.min()), float(a.max())
    if amax - amin < 1:
        raise InputError("the volume is constant: no image content")
    if float(np.mean(a < NOT_CT_BELOW_HU)) < NOT_CT_MIN_FRACTION:
        raise InputError(
            f"not CT: no air or fat (values {amin:.0f}..{amax:.0f}, almost none below {NOT_CT_BELOW_HU:g}); "
            "vBMD needs a CT in Hounsfield units (is this MR, PET, or CT without its rescale to HU?)"
        )
    if amin > -500 or amax < 300:
        qc.append(
            f"not_hu: value range {amin:.0f}..{amax:.0f} does not look like CT Hounsfield units "
            "(no air or no bone)"
        )
    blank = _blank_slices(a)
    if blank:
        qc.append(f"blank_slice: {len(blank)} slice(s) hold a single value (k={blank[:5]}): missing image data")
    if vol.meta.get("canonical_residual_deg", 0) > 1.0:
        qc.append(f"oblique: volume is rotated {vol.meta['canonical_residual_deg']:.1f} degrees from axial")
    st = vol.meta.get("slice_thickness") or vol.spacing[2]
    if st and st > 3.0:
        qc.append(f"thick_slices: {st:g} mm slices; partial-volume averaging lowers precision")
    return qc


def _blank_slices(a: np.ndarray) -> list[int]:
    ks = np.flatnonzero(np.ptp(a.reshape(a.shape[0], -1), axis=1) == 0)
    return [int(k) for k in ks]


def corrupt_slices_in_roi(a: np.ndarray, roi: np.ndarray) -> list[tuple[int, float]]:
    """(k, fraction) for each axial slice k whose ROI voxels spike away from both neighbour slices.

    ``a`` and ``roi`` are on the canonical grid (k = axial slice). A slice of random values, a blank or a
    decoding error inside the ROI moves its mean without changing its neighbours, so it shows as voxels
    far from the mean of the slices above and below; real bone changes smoothly across slices.
    """
    ks = np.flatnonzero(roi.any(axis=(1, 2)))
    out = []
    for k in ks:
        if k == 0 or k == a.shape[0] - 1:
            continue  # the edge slice has one neighbour: it cannot be judged this way
        m = roi[k]
        here, below, above = (a[i][m].astype(np.float64) for i in (k, k - 1, k + 1))
        # A spike: far from both neighbours while they agree with each other (so a clean slice next to a
        # corrupted one is not a spike itself).
        spike = ((np.abs(here - below) > SPIKE_HU) & (np.abs(here - above) > SPIKE_HU)
                 & (np.abs(below - above) < SPIKE_HU / 2))
        frac = float(np.mean(spike))
        if frac > SPIKE_FRACTION:
            out.append((int(k), frac))
    return out
