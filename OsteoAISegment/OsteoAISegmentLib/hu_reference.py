"""The scan's own HU reference: its fat and soft-tissue peaks, as a linear map to nominal HU.

Fixed HU thresholds (bone > 150 HU, fat < -30 HU) silently move against the anatomy when a
scanner's HU scale or offset is off, or at low kVp where bone reads denser. Reading both peaks
from the scan and mapping them to nominal values (fat -100, muscle 45) makes every threshold
applied to the mapped image scan-relative: a linear change HU' = a*HU + b moves the peaks, and
with them the map, so the mapped image (and what is segmented on it) stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

FAT_HU = -100.0  # nominal fat peak (120 kVp)
SOFT_HU = 45.0  # nominal muscle peak
AIR_HU = -1000.0
SCALE_RANGE = (0.75, 1.35)  # beyond this the peaks were misread: the map is clipped
OFFSET_RANGE = (-80.0, 80.0)
AIR_WINDOW = 60.0 / 900.0  # half-width of the air mode's window, of the fat-to-air spread
LOW_SIDE_MAX = 15.0  # most the air peak's low side may spread (HU) when lungs join it (see _air_below_lungs)
_MIN_SPREAD = 90.0  # fat and muscle are never closer than this (HU) on any CT


@dataclass(frozen=True)
class HuReference:
    fat: float  # fat peak in the scan's HU (nan: not found)
    soft: float  # soft-tissue (muscle) peak in the scan's HU (nan: not found)
    scale: float  # scan HU = scale * nominal HU + offset
    offset: float
    air: float = float("nan")  # outside-air peak in the scan's HU (nan: not in view)

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.fat) and np.isfinite(self.soft))

    @property
    def calibrated(self) -> bool:
        """Whether the map was read from the scan (its fat, and the outside air or muscle)."""
        return bool(np.isfinite(self.fat) and (np.isfinite(self.air) or np.isfinite(self.soft)))

    def qc(self) -> list[str]:
        """The segmentation QC note when the scan shows no reference to read the map from."""
        if self.calibrated:
            return []
        return [
            "hu_reference: neither fat nor the air around the patient is in view: the segmentation's "
            "thresholds assume the scanner's nominal HU scale"
        ]

    def to_nominal(self, x):
        """Scan HU -> nominal HU (array or scalar)."""
        return (x - self.offset) / self.scale

    def as_dict(self) -> dict:
        return {
            "fat_hu": _r(self.fat),
            "soft_tissue_hu": _r(self.soft),
            "air_hu": _r(self.air),
            "scale": round(self.scale, 4),
            "offset_hu": round(self.offset, 2),
        }


IDENTITY = HuReference(float("nan"), float("nan"), 1.0, 0.0)


def _r(x: float):
    return round(float(x), 1) if np.isfinite(x) else None


def _peaks(hs: np.ndarray, floor: float) -> np.ndarray:
    """Indices of a smoothed histogram's peaks (left side non-strict, right side strict) above ``floor``."""
    return np.nonzero((hs[1:-1] >= hs[:-2]) & (hs[1:-1] > hs[2:]) & (hs[1:-1] > floor))[0] + 1


def _mean_shift(v: np.ndarray, x0: float, half: float, iters: int = 30) -> float:
    """Local mean of the values within ``half`` of the mode, iterated: sub-bin precise and, as
    its window scales with the peak spread, moves with a linear change of the values."""
    x = x0
    for _ in range(iters):
        w = v[np.abs(v - x) <= half]
        if len(w) < 50:
            break
        x_new = float(w.mean())
        if abs(x_new - x) < 1e-3:
            x = x_new
            break
        x = x_new
    return x


def estimate(values: np.ndarray) -> HuReference:
    """Fat, soft-tissue and outside-air peaks of ``values`` (a smoothed ~2 mm grid; 3D k/j/i).

    Fat: the lowest major peak; it sets the offset. The scale comes from the
    fat-to-air spread where the air around the patient is in view (900 HU: a long lever, and the
    same on every body), else from the fat-to-muscle spread (muscle: the lowest clear peak 90-300
    HU above fat; enhanced organs and vessels make higher peaks, often taller than the muscle's;
    fatty muscle reads low, so this is the less precise of the two). A peak that cannot be found
    leaves the nominal map (scale 1, offset 0).
    """
    arr = np.asarray(values, np.float32)
    v = arr.ravel()
    v = v[(v > -450) & (v < 450)]
    if len(v) < 1000:
        return IDENTITY
    if len(v) > 4_000_000:
        v = v[:: len(v) // 2_000_000]
    edges = np.arange(-450.0, 451.0, 5.0)
    h, _e = np.histogram(v, edges)
    c = 0.5 * (edges[:-1] + edges[1:])
    hs = ndi.gaussian_filter1d(h.astype(float), 2.0)
    top = hs.max()
    pk = _peaks(hs, 0.08 * top)
    # fat: the lowest major peak (muscle at high kVp with a low HU scale reads near -20 HU, where
    # a fixed fat window would take it)
    fat_c = pk[(c[pk] > -330) & (c[pk] < 60) & (hs[pk] >= 0.25 * top)]
    if len(fat_c) == 0:
        return IDENTITY
    f0 = float(c[fat_c[0]])
    soft_c = pk[(c[pk] >= f0 + _MIN_SPREAD) & (c[pk] <= f0 + 300)]
    s0 = float("nan")
    if len(soft_c):
        tallest = hs[soft_c].max()
        s0 = float(c[soft_c[hs[soft_c] >= 0.3 * tallest][0]])
        for _ in range(2):
            half = 0.2 * (s0 - f0)
            f0, s0 = _mean_shift(v, f0, half), _mean_shift(v, s0, half)
        if not s0 - f0 >= _MIN_SPREAD * 0.8:
            s0 = float("nan")
    else:
        f0 = _mean_shift(v, f0, 30.0)
    air = _outside_air(arr, f0) if arr.ndim == 3 else float("nan")
    if np.isfinite(air):
        scale = (f0 - air) / (FAT_HU - AIR_HU)
    elif np.isfinite(s0):
        scale = (s0 - f0) / (SOFT_HU - FAT_HU)
    else:
        return IDENTITY
    scale = float(np.clip(scale, *SCALE_RANGE))
    offset = float(np.clip(f0 - scale * FAT_HU, *OFFSET_RANGE))
    return HuReference(f0, s0, scale, offset, air)


def _outside_air(arr: np.ndarray, fat: float) -> float:
    """Mode of the air around the patient: dark voxels connected to the in-plane edges of the
    image, when there are enough and they are uniform (lungs cut by a tight field of view are
    textured and read ~150 HU above air); nan otherwise."""
    if min(arr.shape) < 5:
        return float("nan")
    arr = arr[1:-1, 1:-1, 1:-1]  # a resampled grid's last layer may hold its fill value
    dark = arr < fat - 450
    seed = np.zeros_like(dark)
    seed[:, [0, -1], :] = True
    seed[:, :, [0, -1]] = True
    lab, n = ndi.label(dark)
    if n == 0:
        return float("nan")
    ids = np.unique(lab[seed & dark])
    ids = ids[ids > 0]
    if len(ids) == 0:
        return float("nan")
    vals = arr[np.isin(lab, ids)]
    vals = vals[vals > -1500]  # outside the reconstruction circle
    if len(vals) < max(1000, 0.01 * arr.size):
        return float("nan")
    med = float(np.median(vals))
    # the window is a fixed share of the fat-to-air spread, so a linear change of the HU scale
    # moves the estimate with it (a fixed 60 HU window on the skewed air histogram did not, by 1 HU)
    mode = _mean_shift(vals, med, AIR_WINDOW * (fat - med))
    mad = float(np.median(np.abs(vals - mode)))
    # air outside the patient is uniform (MAD ~10-18 HU on real ~2 mm grids); a lung cut by the
    # field of view is textured (MAD ~35) and ~150 HU denser
    if mad > 25:
        mode = _air_below_lungs(vals, fat)
    if not fat - mode >= 550:
        return float("nan")
    return mode


def _air_below_lungs(vals: np.ndarray, fat: float) -> float:
    """Mode of the lowest clear peak of the edge-connected dark voxels (nan: not uniform air), for a
    field of view that cuts the lungs while air surrounds the patient: the lungs then join the air's
    set and add a broad peak above it, which spoils its median and MAD. The air's own peak is then
    the lowest of two or more, and its low side, with no lung below it, is noise alone: the median
    distance below the mode is ~8 HU there, against ~27 HU for the low side of a tight-cropped lung's
    peak."""
    lo, hi = np.percentile(vals, [0.5, 99.5])
    h, e = np.histogram(vals, np.linspace(lo, hi, 81))  # bins scale with the values: equivariant
    hs = ndi.gaussian_filter1d(h.astype(float), 1.0)
    c = 0.5 * (e[1:] + e[:-1])
    pk = _peaks(hs, 0.25 * hs.max())
    if len(pk) < 2:
        return float("nan")  # one peak: the set is air alone (MAD decided) or a lung alone, no air
    seed = float(c[pk[0]])
    mode = _mean_shift(vals, seed, 0.5 * AIR_WINDOW * (fat - seed))
    below = mode - vals[vals <= mode]
    return mode if len(below) and float(np.median(below)) <= LOW_SIDE_MAX else float("nan")


def estimate_work(work: np.ndarray) -> HuReference:
    """:func:`estimate` on a segmenter's ~2 mm work grid (already partial-volume averaged, which keeps
    noise from broadening the muscle peak into a taller enhanced-organ peak next to it), lightly
    smoothed."""
    return estimate(ndi.gaussian_filter(np.asarray(work, np.float32), 0.7))
