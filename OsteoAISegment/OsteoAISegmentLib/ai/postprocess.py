"""From network outputs (semantic classes + per-voxel level votes) to labelled vertebrae.

Steps, all on the coarse isotropic grid:
1. vertebral bodies = connected components of the "body" class (discs separate them); a component
   much taller than its neighbours is split at its narrowest slices (a missed disc);
2. posterior elements join the body they are connected to through bone (geodesic growth inside the
   vertebra mask, so a sloping thoracic spinous process stays with its own vertebra);
3. the instances, in cranio-caudal order, get consecutive levels; the offset is the one that best
   agrees with the network's level votes plus two anatomical anchors: the lowest rib-bearing
   vertebra is T12, and the vertebra resting on the sacrum is L5. Disagreements become QC flags.
"""

from __future__ import annotations

import numpy as np
from OsteoAILib import levels as lv
from scipy import ndimage

from .labels import BODY, LEVELS, N_LEVELS, POSTERIOR, RIB, SACRUM

RIB_ANCHOR_NATS = 25.0  # a visible last rib outweighs a few uncertain votes, not a whole column
SACRUM_ANCHOR_NATS = 12.0
MIN_BODY_MM3 = 1500.0  # smaller body fragments are noise or a sliver at the scan edge
MIN_PARTIAL_BODY_MM3 = 400.0
MIN_RIB_MM3 = 150.0
RIB_TOUCH_MM = 8.0


def _components(mask: np.ndarray):
    lab, n = ndimage.label(mask)
    return lab, n


def _split_tall(lab: np.ndarray, spacing: float) -> np.ndarray:
    """Split body components spanning two or more vertebral heights at their narrowest slices."""
    ids = [i for i in np.unique(lab) if i]
    if len(ids) < 2:
        return lab
    objs = ndimage.find_objects(lab)
    heights = np.array([(objs[i - 1][0].stop - objs[i - 1][0].start) for i in ids], float)
    ref = np.median(heights) if len(ids) >= 3 else min(heights.max(), 28.0 / spacing)
    ref = float(np.clip(ref, 16.0 / spacing, 34.0 / spacing))
    out = lab.copy()
    nxt = lab.max() + 1
    for i, h in zip(ids, heights, strict=False):
        n = int(round(h / ref))
        if n < 2 or h < 1.6 * ref:
            continue
        sl = objs[i - 1]
        area = (lab[sl] == i).sum(axis=(1, 2)).astype(float)
        area = ndimage.uniform_filter1d(area, 3)
        cuts = []
        for c in range(1, n):
            centre = int(round(c * len(area) / n))
            lo, hi = max(1, centre - int(ref * 0.35)), min(len(area) - 1, centre + int(ref * 0.35) + 1)
            cuts.append(lo + int(np.argmin(area[lo:hi])))
        bounds = [0] + sorted(set(cuts)) + [len(area)]
        sub = out[sl]
        for a, b in zip(bounds[1:-1], bounds[2:], strict=False):
            part = sub[a:b]
            part[part == i] = nxt
            nxt += 1
    return out


def _grow(seeds: np.ndarray, mask: np.ndarray, max_iter: int = 60) -> np.ndarray:
    """Geodesic growth of labelled seeds inside ``mask`` (6-connected, one voxel per step)."""
    lab = np.where(mask | (seeds > 0), seeds, 0).astype(np.int32)
    free = mask & (lab == 0)
    fp = ndimage.generate_binary_structure(3, 1)
    for _ in range(max_iter):
        if not free.any():
            break
        grown = ndimage.grey_dilation(lab, footprint=fp)
        take = free & (grown > 0)
        if not take.any():
            break
        lab[take] = grown[take]
        free &= ~take
    return lab


def label_vertebrae(sem: np.ndarray, level_prob: np.ndarray, spacing: float,
                    scan_k_range: tuple[int, int] | None = None) -> dict:
    """Instances and levels on the coarse grid.

    sem: uint8 argmax of the semantic classes; level_prob: float (N_LEVELS, *sem.shape) softmax of
    the level channels; spacing: coarse voxel size in mm. Returns a dict with ``vertebrae`` (int16
    VerSe ids), ``levels`` (cranial -> caudal), ``qc``, ``rib_pairs``, ``partial_levels``.
    """
    vox = spacing**3
    qc: list[str] = []
    body = sem == BODY
    vert = body | (sem == POSTERIOR)
    lab, n = _components(body)
    if n:
        sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1)) * vox
        objs = ndimage.find_objects(lab)
        k0, k1 = scan_k_range or (0, sem.shape[0])
        keep = np.zeros(n + 1, bool)
        for i in range(n):
            at_edge = objs[i][0].start <= k0 or objs[i][0].stop >= k1
            keep[i + 1] = sizes[i] >= (MIN_PARTIAL_BODY_MM3 if at_edge else MIN_BODY_MM3)
        lab = np.where(keep[lab], lab, 0)
        lab = _split_tall(lab, spacing)
    ids = [int(i) for i in np.unique(lab) if i]
    if not ids:
        return {"vertebrae": np.zeros(sem.shape, np.int16), "levels": [], "qc": ["no_spine: no vertebral body found"],
                "rib_pairs": 0, "partial_levels": []}
    cents = ndimage.center_of_mass(np.ones_like(lab), lab, ids)
    order = [i for _, i in sorted(zip([-c[0] for c in cents], ids, strict=False))]  # cranial (large k) first
    remap = np.zeros(lab.max() + 1, np.int32)
    for r, i in enumerate(order):
        remap[i] = r + 1
    inst = remap[lab]
    inst = _grow(inst, vert)
    # votes: mean log-probability of each level over the instance's voxels
    n_inst = len(order)
    logp = np.log(np.clip(level_prob, 1e-4, 1.0))
    votes = np.zeros((n_inst, N_LEVELS))
    for c in range(N_LEVELS):
        votes[:, c] = ndimage.mean(logp[c], inst, index=np.arange(1, n_inst + 1))

    # rib anchor: ribs whose medial end touches a vertebra
    rib_lab, n_rib = _components(sem == RIB)
    ribs_on = {}  # instance -> set of sides
    if n_rib:
        dist, (ki, ji, ii) = ndimage.distance_transform_edt(inst == 0, return_indices=True)
        rsizes = ndimage.sum_labels(np.ones_like(rib_lab), rib_lab, index=np.arange(1, n_rib + 1)) * vox
        robjs = ndimage.find_objects(rib_lab)
        for r in range(1, n_rib + 1):
            if rsizes[r - 1] < MIN_RIB_MM3:
                continue
            sl = robjs[r - 1]
            pts = np.argwhere(rib_lab[sl] == r) + np.array([s.start for s in sl])
            d = dist[tuple(pts.T)]
            j = int(np.argmin(d))
            if d[j] * spacing > RIB_TOUCH_MM:
                continue
            p = pts[j]
            owner = int(inst[ki[tuple(p)], ji[tuple(p)], ii[tuple(p)]])
            side = "R" if pts[:, 2].mean() < p[2] else "L"  # i runs right -> left
            ribs_on.setdefault(owner, set()).add(side)
    rib_inst = sorted(ribs_on)
    last_rib = max(rib_inst) - 1 if rib_inst else None  # 0-based, caudal-most rib-bearing
    rib_pairs = sum(1 for s in ribs_on.values() if len(s) == 2)

    sac = sem == SACRUM
    sacrum_below = None
    if sac.sum() * vox > 5000:
        sk = np.flatnonzero(sac.any(axis=(1, 2))).max()
        low = np.argwhere(inst == n_inst)[:, 0].min()
        if low - sk < 20.0 / spacing:
            sacrum_below = n_inst - 1

    # the offset o: instance r gets level index o + r (T1 = 0 ... L5 = 16); outside that range the
    # vertebra is C7 and above, or L6, which the level channels cannot vote for.
    floor = np.log(1e-3)
    best = None
    for o in range(-n_inst + 1, N_LEVELS):
        s = 0.0
        for r in range(n_inst):
            c = o + r
            s += votes[r, c] if 0 <= c < N_LEVELS else floor
        if last_rib is not None and o + last_rib == LEVELS.index(19):
            s += RIB_ANCHOR_NATS
        if sacrum_below is not None and o + sacrum_below == LEVELS.index(24):
            s += SACRUM_ANCHOR_NATS
        if best is None or s > best[0]:
            best = (s, o)
    o = best[1]
    names = []
    for r in range(n_inst):
        c = o + r
        if 0 <= c < N_LEVELS:
            names.append(LEVELS[c])
        elif c < 0:
            names.append(7 + c + 1 if 7 + c + 1 >= 1 else 0)  # C7, C6, ...
        else:
            names.append(25 if c == N_LEVELS else 0)  # L6; lower would be nonsense
    if last_rib is not None and o + last_rib != LEVELS.index(19):
        qc.append(f"rib_anchor: the last rib-bearing vertebra was labelled {lv.name(names[last_rib])}, not T12"
                  if names[last_rib] in lv.NAMES else "rib_anchor: last rib-bearing vertebra out of range")
    if last_rib is not None and sacrum_below is not None:
        n_lumbar = sacrum_below - last_rib
        if n_lumbar != 5:
            qc.append(f"lumbar_count: {n_lumbar} vertebrae between the last rib and the sacrum (expected 5)")
    top_cervical = names[0] in range(1, 8)
    if top_cervical and rib_inst and len(rib_inst) in (11, 13):
        qc.append(f"rib_count: {len(rib_inst)} rib-bearing vertebrae (expected 12); levels counted from the last rib")
    if last_rib is None and sacrum_below is None:
        qc.append("no_anchor: neither the last rib nor the sacrum is in view; levels rest on the model's votes")

    out = np.zeros(sem.shape, np.int16)
    lut = np.zeros(n_inst + 1, np.int16)
    for r, v in enumerate(names):
        lut[r + 1] = v
    out = lut[inst]
    k0, k1 = scan_k_range or (0, sem.shape[0])
    partial = []
    for r, v in enumerate(names):
        if not v:
            continue
        kk = np.flatnonzero((inst == r + 1).any(axis=(1, 2)))
        if kk.size and (kk[0] <= k0 or kk[-1] >= k1 - 1):
            partial.append(int(v))
    levels_out = [int(v) for v in names if v]
    return {"vertebrae": out, "levels": levels_out, "qc": qc, "rib_pairs": int(rib_pairs),
            "rib_levels": [int(names[r - 1]) for r in rib_inst if names[r - 1]], "partial_levels": partial}
