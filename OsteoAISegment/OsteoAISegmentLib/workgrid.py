"""A coarse isotropic working grid (about 2 mm) and the way back to the input canonical grid.

Segmenting at ~2 mm keeps the classical pipeline fast; masks go back to the input grid by
interpolating a smooth (signed-distance-like) field rather than nearest neighbour, then they
are refined against the full-resolution image, which avoids staircase masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass
class WorkGrid:
    full_shape: tuple[int, int, int]  # [k, j, i] of the input canonical array
    full_spacing: tuple[float, float, float]  # (si, sj, sk)
    ws: float  # work spacing, mm, isotropic
    shape: tuple[int, int, int]

    def full_to_work_kji(self, kji) -> np.ndarray:
        s = np.asarray(self.full_spacing[::-1])
        return np.asarray(kji, dtype=float) * s / self.ws

    def work_to_full_kji(self, kji) -> np.ndarray:
        s = np.asarray(self.full_spacing[::-1])
        return np.asarray(kji, dtype=float) * self.ws / s


def make_work(array: np.ndarray, spacing, ws: float = 2.0) -> tuple[np.ndarray, WorkGrid]:
    """Average-then-resample ``array`` onto an isotropic ``ws`` grid sharing voxel (0,0,0)'s centre."""
    spacing = tuple(float(s) for s in spacing)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(spacing)
    shrink = [max(1, int(ws / s + 1e-6)) for s in spacing]
    if any(f > 1 for f in shrink):
        img = sitk.BinShrink(img, shrink)  # partial-volume averaging, not aliasing
    size = [int(np.floor((n - 1) * s / ws + 1e-6)) + 1 for n, s in zip(array.shape[::-1], spacing, strict=False)]
    out = sitk.Resample(
        img,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        (0.0, 0.0, 0.0),
        (ws,) * 3,
        tuple(np.eye(3).ravel()),
        -1000.0,
        sitk.sitkFloat32,
    )
    work = sitk.GetArrayFromImage(out)
    return work, WorkGrid(tuple(array.shape), spacing, ws, tuple(work.shape))


def to_full(
    field: np.ndarray, grid: WorkGrid, default: float, linear: bool = True, box: tuple | None = None
) -> np.ndarray:
    """Resample a work-grid field onto the full canonical grid (linear or nearest).

    ``box`` = (lo_kji, hi_kji) full-grid index bounds (hi exclusive): only that block is computed
    and returned, which is what keeps this cheap on 512x512 slices.
    """
    img = sitk.GetImageFromArray(np.ascontiguousarray(field))
    img.SetSpacing((grid.ws,) * 3)
    if box is None:
        lo, hi = np.zeros(3, int), np.asarray(grid.full_shape)
    else:
        lo, hi = np.asarray(box[0], int), np.asarray(box[1], int)
    size = [int(x) for x in (hi - lo)[::-1]]
    origin = tuple(float(x) for x in (lo * np.asarray(grid.full_spacing[::-1]))[::-1])
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = sitk.Resample(
        img,
        size,
        sitk.Transform(),
        interp,
        origin,
        grid.full_spacing,
        tuple(np.eye(3).ravel()),
        float(default),
        img.GetPixelID(),
    )
    return sitk.GetArrayFromImage(out)
