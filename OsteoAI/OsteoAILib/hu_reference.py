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
SCALE_RANGE = (0.75, 1.35)  # beyond this the peaks were misread: the map is clipped
OFFSET_RANGE = (-80.0, 80.0)
_MIN_SPREAD = 90.0  # fat and muscle are never closer than this (HU) on any CT


@dataclass(frozen=True)
class HuReference:
    fat: float  # fat peak in the scan's HU (nan: not found)
    soft: float  # soft-tissue (muscle) peak in the scan's HU (nan: not found)
    scale: float  # scan HU = scale * nominal HU + offset
    offset: float

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.fat) and np.isfinite(self.soft))

    def to_nominal(self, x):
        """Scan HU -> nominal HU (array or scalar)."""
        return (x - self.offset) / self.scale

    def as_dict(self) -> dict:
        return {"fat_hu": _r(self.fat), "soft_tissue_hu": _r(self.soft), "scale": round(self.scale, 4),
                "offset_hu": round(self.offset, 2)}


IDENTITY = HuReference(float("nan"), float("nan"), 1.0, 0.0)


def _r(x: float):
    return round(float(x), 1) if np.isfinite(x) else None


def _mean_shift(v: np.ndarray, x0: float, half: float, iters: int = 6) -> float:
    """Local mean of the values within ``half`` of the mode, iterated: sub-bin precise and, as
    its window scales with the peak spread, moves with a linear change of the values."""
    x = x0
    for _ in range(iters):
        w = v[np.abs(v - x) <= half]
        if len(w) < 50:
            break
        x_new = float(w.mean())
        if abs(x_new - x) < 0.01:
            x = x_new
            break
        x = x_new
    return x


def estimate(values: np.ndarray) -> HuReference:
    """Fat and soft-tissue peaks of ``values`` (a smoothed ~2 mm grid of the body; any shape).

    Fat: the main peak below the soft tissues. Soft tissue: the lowest clear peak 90-300 HU above
    fat; contrast-enhanced organs and vessels make higher peaks, often taller than the muscle's.
    A peak that cannot be found leaves the nominal map (scale 1, offset 0).
    """
    v = np.asarray(values, np.float32).ravel()
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
    pk = np.nonzero((hs[1:-1] >= hs[:-2]) & (hs[1:-1] > hs[2:]) & (hs[1:-1] > 0.08 * top))[0] + 1
    fat_c = pk[(c[pk] > -330) & (c[pk] < -10)]
    if len(fat_c) == 0:
        return IDENTITY
    f0 = float(c[fat_c[np.argmax(hs[fat_c])]])
    soft_c = pk[(c[pk] >= f0 + _MIN_SPREAD) & (c[pk] <= f0 + 300)]
    if len(soft_c) == 0:
        return IDENTITY
    tallest = hs[soft_c].max()
    s0 = float(c[soft_c[hs[soft_c] >= 0.3 * tallest][0]])
    for _ in range(2):
        half = 0.2 * (s0 - f0)
        f0, s0 = _mean_shift(v, f0, half), _mean_shift(v, s0, half)
    if not s0 - f0 >= _MIN_SPREAD * 0.8:
        return IDENTITY
    scale = float(np.clip((s0 - f0) / (SOFT_HU - FAT_HU), *SCALE_RANGE))
    offset = float(np.clip(f0 - scale * FAT_HU, *OFFSET_RANGE))
    return HuReference(f0, s0, scale, offset)


def estimate_volume(array: np.ndarray, spacing, ws: float = 2.0) -> HuReference:
    """:func:`estimate` on a ~``ws`` mm block-averaged, lightly smoothed copy of a canonical array
    (spacing si, sj, sk). Averaging, not striding: noise broadens the peaks until the muscle's
    merges into a taller enhanced-organ peak next to it."""
    sk = np.asarray(spacing[::-1], float)
    step = np.maximum(1, np.round(ws / sk).astype(int))
    a = np.asarray(array, np.float32)
    if (step > 1).any():
        a = ndi.uniform_filter(a, size=tuple(int(s) for s in step), mode="nearest")
        a = a[tuple(slice(int(s) // 2, None, int(s)) for s in step)]
    return estimate(ndi.gaussian_filter(a, 0.7))
