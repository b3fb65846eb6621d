"""Checks on a loaded volume before any stage runs: bad input gets a clear error, doubtful input a QC flag."""

from __future__ import annotations

import numpy as np
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.volume import Volume

MIN_SLICES = 8
SPACING_RANGE_MM = (0.2, 10.0)
# Every CT of a body holds air or fat below -50 HU; MR, PET and CT without its rescale to HU do not.
NOT_CT_BELOW_HU = -50.0
NOT_CT_MIN_FRACTION = 0.005
# A voxel that jumps this far from the mean of the slices above and below is no anatomy (edges move
# less between slices inside a trabecular ROI); this many of them in one slice of an ROI make it corrupt.
SPIKE_HU = 500.0
SPIKE_FRACTION = 0.03
SLICE_SPIKE_FRACTION = 0.05  # of a whole slice: a QC flag (real scans: < 1%)
EDGE_SLICE_SPIKE_FRACTION = 0.15  # an edge slice, judged one-sided (real scans reach 2.5%)
BROKEN_SLICE_FRACTION = 0.5  # of a whole slice: no anatomy does this, the slice is not of this series
MAX_CT_HU = 30710.0  # the top of the extended CT scale: above it no value is a physical HU


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
            raise InputError(
                f"the volume contains NaN or infinite values in {int(bad.sum())} of {a.shape[0]} slices: no HU there"
            )
    amin, amax = float(a.min()), float(a.max())
    if amax - amin < 1:
        raise InputError("the volume is constant: no image content")
    if float(np.mean(a > NOT_CT_BELOW_HU)) < NOT_CT_MIN_FRACTION:
        raise InputError(
            f"not CT: no soft tissue or bone (values {amin:.0f}..{amax:.0f}, almost none above {NOT_CT_BELOW_HU:g}); "
            "vBMD needs a CT in Hounsfield units (a wrong rescale?)"
        )
    if float(np.mean(a < NOT_CT_BELOW_HU)) < NOT_CT_MIN_FRACTION:
        raise InputError(
            f"not CT: no air or fat (values {amin:.0f}..{amax:.0f}, almost none below {NOT_CT_BELOW_HU:g}); "
            "vBMD needs a CT in Hounsfield units (is this MR, PET, or CT without its rescale to HU?)"
        )
    if amin > -500 or amax < 300:
        qc.append(
            f"not_hu: value range {amin:.0f}..{amax:.0f} does not look like CT Hounsfield units (no air or no bone)"
        )
    bad = inconsistent_slices(a)
    if bad and max(f for _, f in bad) > BROKEN_SLICE_FRACTION:
        k, f = max(bad, key=lambda b: b[1])
        raise InputError(
            f"slice k={k} differs from both neighbour slices in {100 * f:.0f}% of its voxels: a "
            "corrupted or mis-scaled slice (its rescale or pixel data do not fit the series)"
        )
    steps = slice_steps(a)
    if steps.size and steps.max() > BROKEN_SLICE_FRACTION:
        k = int(steps.argmax())
        raise InputError(
            f"slices k={k} and k={k + 1} differ in {100 * steps[k]:.0f}% of their voxels by more than "
            f"{SPIKE_HU:g} HU: mis-scaled slices (a rescale that does not fit) or two series mixed"
        )
    if amax > MAX_CT_HU:
        qc.append(
            f"implausible_hu: {int(np.sum(a > MAX_CT_HU))} voxels above {MAX_CT_HU:g} HU, beyond any CT scale "
            "(metal, or stored values misread)"
        )
    if bad:
        qc.append(
            f"corrupt_slice: {len(bad)} slice(s) differ from both neighbours in many voxels "
            f"(k={[k for k, _ in bad][:5]}); values there are doubtful"
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


def inconsistent_slices(a: np.ndarray, step: int = 2) -> list[tuple[int, float]]:
    """(k, fraction) of axial slices whose voxels spike away from both neighbours (see
    :func:`corrupt_slices_in_roi`) in more than SLICE_SPIKE_FRACTION of the slice (sampled every ``step``).
    An edge slice is judged against the next two: far from the first while those two agree."""

    def frac(here, n1, n2):
        here, n1, n2 = (x[:, ::step, ::step].astype(np.float32) for x in (here, n1, n2))
        spike = (np.abs(here - n1) > SPIKE_HU) & (np.abs(here - n2) > SPIKE_HU) & (np.abs(n1 - n2) < SPIKE_HU / 2)
        return spike.mean(axis=(1, 2))

    n = a.shape[0]
    out = []
    for k0 in range(1, n - 1, 32):
        k1 = min(k0 + 32, n - 1)
        f = frac(a[k0:k1], a[k0 - 1 : k1 - 1], a[k0 + 1 : k1 + 1])
        out += [(k0 + int(i), float(f[i])) for i in np.flatnonzero(f > SLICE_SPIKE_FRACTION)]
    if n >= 3:
        for k, (k1, k2) in ((0, (1, 2)), (n - 1, (n - 2, n - 3))):
            f = _edge_frac(a[k], a[k1], a[k2], step)
            if f > EDGE_SLICE_SPIKE_FRACTION:
                out.append((k, f))
    return sorted(out)


def _edge_frac(here, n1, n2, step) -> float:
    here, n1, n2 = (x[::step, ::step].astype(np.float32) for x in (here, n1, n2))
    return float(np.mean((np.abs(here - n1) > SPIKE_HU) & (np.abs(n1 - n2) < SPIKE_HU / 2)))


def slice_steps(a: np.ndarray, step: int = 2) -> np.ndarray:
    """Per adjacent slice pair, the fraction of voxels (sampled every ``step``) changing by > SPIKE_HU.
    Anatomy moves a few percent of a slice that far (real scans: at most 5%); a block of slices with a
    wrong rescale or another series' slices move nearly all of it."""
    out = np.zeros(max(a.shape[0] - 1, 0))
    for k0 in range(0, a.shape[0] - 1, 32):
        k1 = min(k0 + 33, a.shape[0])
        part = a[k0:k1, ::step, ::step].astype(np.float32)
        out[k0 : k1 - 1] = (np.abs(np.diff(part, axis=0)) > SPIKE_HU).mean(axis=(1, 2))
    return out


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
        spike = (
            (np.abs(here - below) > SPIKE_HU)
            & (np.abs(here - above) > SPIKE_HU)
            & (np.abs(below - above) < SPIKE_HU / 2)
        )
        frac = float(np.mean(spike))
        if frac > SPIKE_FRACTION:
            out.append((int(k), frac))
    return out
