"""Bounding boxes of the labels of a labelmap, fast: the per-level QC, the reference-tissue sampler, the
vBMD measurement and the key images all look at one label at a time inside its box instead of scanning
the whole volume once per label."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_BOX_CACHE: dict[int, tuple[np.ndarray, list]] = {}  # id -> (array kept alive, boxes)


def label_boxes(arr: np.ndarray) -> list:
    """``ndimage.find_objects`` for a sparse labelmap with few labels, several times faster: the
    slices holding each label from its nonzero voxels, then the in-plane box from one projection."""
    a = np.asarray(arr)
    if a.dtype.kind not in "iu" or a.size == 0 or a.min() < 0:
        return ndi.find_objects(a.astype(np.int32))
    n = int(a.max())
    if n == 0:
        return []
    present = np.zeros((a.shape[0], n + 1), bool)  # [k, label]
    for k, sl in enumerate(a):
        v = sl[sl != 0]
        if v.size:
            present[k, np.unique(v)] = True
    boxes: list = [None] * n
    for lab in range(1, n + 1):
        ks = np.nonzero(present[:, lab])[0]
        if ks.size == 0:
            continue
        k0, k1 = int(ks[0]), int(ks[-1]) + 1
        proj = (a[k0:k1] == lab).any(axis=0)
        jj = np.nonzero(proj.any(axis=1))[0]
        ii = np.nonzero(proj.any(axis=0))[0]
        boxes[lab - 1] = (slice(k0, k1), slice(int(jj[0]), int(jj[-1]) + 1), slice(int(ii[0]), int(ii[-1]) + 1))
    return boxes


def cached_label_boxes(arr: np.ndarray) -> list:
    """Bounding boxes of every label, computed once per labelmap (level_flags runs per level)."""
    hit = _BOX_CACHE.get(id(arr))
    if hit is None or hit[0] is not arr:
        if len(_BOX_CACHE) >= 4:
            _BOX_CACHE.clear()
        hit = (arr, label_boxes(arr))
        _BOX_CACHE[id(arr)] = hit
    return hit[1]


def boxes_by_label(labelmap: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Bounding box of every label present, keyed by label (masking the whole volume per label is slow)."""
    return {i + 1: sl for i, sl in enumerate(label_boxes(labelmap)) if sl is not None}
