"""Find the spinal canal on the work grid: a low-density tube enclosed by bone, tracked along k.

Per axial slice, holes of the (closed) bone mask with the size and density of the canal are
candidates; the canal is the longest chain of candidates that moves smoothly from slice to slice
(dynamic programming over the candidates), which rejects marrow cavities, the trachea and vessels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

BONE_HU = 180.0  # on the ~2 mm averaged grid cortical and dense trabecular bone stay above this
_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = ndi.generate_binary_structure(2, 1)


def patient_mask(work: np.ndarray) -> np.ndarray:
    """Largest soft-tissue component (drops the table and air), holes (lungs, bowel gas) filled per slice."""
    m = work > -400
    m = ndi.binary_opening(m, iterations=2)
    lab, n = ndi.label(m)
    if n == 0:
        return m
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    m = lab == np.argmax(sizes)
    return _fill_holes_2d(m)


def _fill_holes_2d(m: np.ndarray) -> np.ndarray:
    pad = np.pad(m, ((1, 1), (0, 0), (0, 0)))
    return ndi.binary_fill_holes(pad, structure=_PLANE)[1:-1]


def canal_candidates(work: np.ndarray, ws: float) -> np.ndarray:
    """Rows (k, j, i, area_mm2, mean_hu, sd_j, sd_i) of canal-like holes in each slice's bone mask.

    Two settings: a strict one, and a looser one for thick slices and thin osteoporotic laminae
    where the strict bone mask does not close around the canal.
    """
    bone = work > BONE_HU
    closed = ndi.binary_closing(bone, structure=_PLANE, iterations=2)
    a = _components(work, ws, _fill_holes_2d(closed) & ~closed)
    b = _components(work, ws, enclosed(work, ws, 130.0) & (work < 130) & (work > -150))
    return np.concatenate([a, b])


def enclosed(work: np.ndarray, ws: float, thr: float, reach_mm: float = 24.0) -> np.ndarray:
    """Voxels that see bone within ``reach_mm`` in at least 7 of 8 in-plane directions.

    Unlike hole filling this tolerates the gaps of the neural arch (foramina, thick slices,
    thin osteoporotic laminae), which is where the canal is not fully enclosed.
    """
    bone = work > thr
    hits = np.zeros(work.shape, np.uint8)
    for dj, di in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
        steps = int(reach_mm / (ws * np.hypot(dj, di)))
        hit = np.zeros(work.shape, bool)
        for s in range(1, steps + 1):
            sj, si = s * dj, s * di
            src = bone[:, max(sj, 0) : bone.shape[1] + min(sj, 0), max(si, 0) : bone.shape[2] + min(si, 0)]
            dst = hit[:, max(-sj, 0) : bone.shape[1] + min(-sj, 0), max(-si, 0) : bone.shape[2] + min(-si, 0)]
            dst |= src
        hits += hit
    return hits >= 7


def _components(work: np.ndarray, ws: float, holes: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(holes, structure=_PLANE)
    if n == 0:
        return np.zeros((0, 7))
    pos = np.nonzero(lab)
    idx = lab[pos]
    cnt = np.bincount(idx, minlength=n + 1).astype(float)
    kk, jj, ii = (p.astype(np.float64) for p in pos)
    sk = np.bincount(idx, kk, n + 1)
    sj = np.bincount(idx, jj, n + 1)
    si = np.bincount(idx, ii, n + 1)
    hu = np.bincount(idx, work[pos], n + 1)
    sjj = np.bincount(idx, jj * jj, n + 1)
    sii = np.bincount(idx, ii * ii, n + 1)
    c = np.maximum(cnt, 1)
    k, j, i, mhu = sk / c, sj / c, si / c, hu / c
    sdj = np.sqrt(np.maximum(sjj / c - j * j, 0)) * ws
    sdi = np.sqrt(np.maximum(sii / c - i * i, 0)) * ws
    area = cnt * ws * ws
    # canal: ~8-25 mm across, CSF/cord/epidural fat density; not a slit, not a marrow cavity
    ok = (area >= 40) & (area <= 900) & (mhu > -150) & (mhu < 130) & (sdj > 1.2) & (sdi > 1.2)
    ok &= (sdj < 10) & (sdi < 12) & (sdi / np.maximum(sdj, 1e-3) < 3) & (sdj / np.maximum(sdi, 1e-3) < 3)
    ok[0] = False
    rows = np.stack([k, j, i, area, mhu, sdj, sdi], 1)[ok]
    return rows


def _anterior_bone_score(rows: np.ndarray, filled_bone: np.ndarray, ws: float) -> np.ndarray:
    """Fraction of bone in a box just anterior to each candidate (the vertebral body must be there)."""
    out = np.zeros(len(rows))
    nk, nj, ni = filled_bone.shape
    for r, (k, j, i, *_rest) in enumerate(rows):
        k, j, i = int(round(k)), int(round(j)), int(round(i))
        j0, j1 = max(0, int(j - 40 / ws)), max(0, int(j - 8 / ws))
        i0, i1 = max(0, int(i - 8 / ws)), min(ni, int(i + 8 / ws) + 1)
        if j1 <= j0:
            continue
        k0, k1 = max(0, k - 2), min(nk, k + 3)
        out[r] = filled_bone[k0:k1, j0:j1, i0:i1].mean()
    return out


def track_canal(rows: np.ndarray, ws: float, scores: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``rows`` forming the best smooth chain along k (longest-path DP)."""
    if len(rows) == 0:
        return np.zeros(0, int)
    order = np.argsort(rows[:, 0], kind="stable")
    r = rows[order]
    q = np.ones(len(r)) if scores is None else scores[order]
    k = r[:, 0]
    ji = r[:, 1:3]
    max_gap = max(2, int(round(24 / ws)))
    best = q.copy()
    prev = -np.ones(len(r), int)
    for n in range(len(r)):
        lo = np.searchsorted(k, k[n] - max_gap - 0.5)
        hi = np.searchsorted(k, k[n] - 0.5)
        if hi <= lo:
            continue
        dz = (k[n] - k[lo:hi]) * ws
        d = np.linalg.norm(ji[lo:hi] - ji[n], axis=1) * ws
        ok = d <= 5 + 0.8 * dz
        if not ok.any():
            continue
        cand = best[lo:hi] - 0.08 * np.maximum(dz / ws - 1, 0)
        cand[~ok] = -np.inf
        m = int(np.argmax(cand))
        if cand[m] > 0:
            best[n] = q[n] + cand[m]
            prev[n] = lo + m
    n = int(np.argmax(best))
    chain = []
    while n >= 0:
        chain.append(n)
        n = prev[n]
    return order[np.array(chain[::-1])]


def centerline(rows: np.ndarray, nk: int, smooth_mm: float, ws: float) -> tuple[np.ndarray, int, int]:
    """(j, i) per slice over the chain's k range, gaps interpolated and smoothed; returns (ji, k0, k1)."""
    k = rows[:, 0]
    k0, k1 = int(np.floor(k.min())), int(np.ceil(k.max()))
    ks = np.arange(k0, k1 + 1)
    j = np.interp(ks, k, rows[:, 1])
    i = np.interp(ks, k, rows[:, 2])
    sig = smooth_mm / ws
    if len(ks) > 3:
        j = ndi.gaussian_filter1d(j, sig, mode="nearest")
        i = ndi.gaussian_filter1d(i, sig, mode="nearest")
    return np.stack([j, i], 1), k0, k1
