"""Resampling and intensity normalisation shared by training and inference.

The network sees the canonical volume (i -> left, j -> posterior, k -> superior) resampled to
``spacing_mm`` isotropic, with HU mapped as ``clip(hu, -1000, 2000) / 1000`` (air -1, water 0,
dense cortical bone up to 2). Resampling is done in index space (the canonical grid's axes are
the patient axes; a residual oblique tilt is ignored, as in the rest of the core).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

HU_MIN, HU_MAX, HU_SCALE = -1000.0, 2000.0, 1000.0


def normalise(hu: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(hu, np.float32), HU_MIN, HU_MAX) / HU_SCALE).astype(np.float32)


def coarse_shape(shape_kji, spacing_ijk, target: float) -> tuple[int, int, int]:
    sp = np.asarray(spacing_ijk, float)[::-1]
    return tuple(max(1, int(round(n * s / target))) for n, s in zip(shape_kji, sp, strict=False))


def resample_image(arr: np.ndarray, out_shape, device: str = "cpu") -> np.ndarray:
    """Linear resampling, area-averaged along axes that shrink (so noise is averaged, not aliased).
    On a GPU this is most of the end-to-end time saved, so it runs where the network runs."""
    t = torch.from_numpy(np.ascontiguousarray(arr))[None, None].to(device).float()
    mid = tuple(min(a, b) for a, b in zip(arr.shape, out_shape, strict=False))
    if mid != tuple(arr.shape):
        t = F.interpolate(t, size=mid, mode="area")
    if mid != tuple(out_shape):
        t = F.interpolate(t, size=tuple(out_shape), mode="trilinear", align_corners=False)
    return t[0, 0].cpu().numpy()


def nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Index into an axis of length n_in for each of n_out cells covering the same extent."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def resample_labels(lab: np.ndarray, out_shape) -> np.ndarray:
    """Nearest-neighbour resampling of a labelmap between two grids covering the same extent."""
    idx = [nearest_index(o, n) for o, n in zip(out_shape, lab.shape, strict=False)]
    return lab[np.ix_(*idx)]


def body_bbox(x: np.ndarray, margin: int = 4) -> tuple[slice, slice, slice]:
    """Bounding box (k, j, i slices) of the patient on a normalised coarse array: drops the air and
    the table around the body, which is most of the voxels of a CT."""
    from scipy import ndimage

    m = x > -0.5  # HU > -500
    m = ndimage.binary_opening(m, iterations=1)
    lab, n = ndimage.label(m)
    if n == 0:
        return tuple(slice(0, s) for s in x.shape)
    sizes = np.bincount(lab.ravel())[1:]
    keep = np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1  # the body, and legs/arms if large
    m = np.isin(lab, keep)
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        nz = np.flatnonzero(m.any(axis=other))
        out.append(slice(max(0, nz[0] - margin), min(x.shape[ax], nz[-1] + 1 + margin)))
    out[0] = slice(0, x.shape[0])  # keep every slice: the spine runs through all of them
    return tuple(out)
