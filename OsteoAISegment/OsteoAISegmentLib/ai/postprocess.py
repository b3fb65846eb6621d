"""From network outputs (semantic classes + per-voxel level votes) to labelled vertebrae.

Steps, all on the coarse isotropic grid:
1. the vertebra mask (body + posterior elements) is reduced to the spinal column: the largest bone
   component and the large ones chained to it;
2. it is split into vertebrae by the level head's argmax (which learns the disc boundaries); stray
   pieces are re-grown from their neighbours through bone (geodesic growth);
3. the instances, in cranio-caudal order, get consecutive levels; the offset is the one that best
   agrees with the network's level votes plus two anatomical anchors: the lowest rib-bearing
   vertebra is T12, and the vertebra resting on the sacrum is L5. Disagreements become QC flags.
"""

from __future__ import annotations

import numpy as np
from OsteoAIBaseLib import levels as lv
from scipy import ndimage

from ..naming import MARGIN_NATS
from .labels import BODY, LEVELS, N_LEVELS, POSTERIOR, RIB, SACRUM

RIB_ANCHOR_NATS = 40.0  # a visible last rib pair outweighs confident votes on about six vertebrae
SACRUM_ANCHOR_NATS = 12.0
MIN_BODY_MM3 = 1500.0  # smaller body fragments are noise or a sliver at the scan edge
MIN_PARTIAL_BODY_MM3 = 400.0
MIN_RIB_MM3 = 400.0
RIB_TOUCH_MM = 8.0


def _components(mask: np.ndarray):
    lab, n = ndimage.label(mask)
    return lab, n


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


def _instances_from_levels(vert: np.ndarray, level_prob: np.ndarray, spacing: float, k_range) -> np.ndarray:
    """Split the vertebra mask by the level head's argmax (it learns where one vertebra ends and the
    next begins, discs included); each level keeps its large pieces, stray pieces are re-grown from
    their neighbours. Returns instance ids 1..n, cranial first."""
    vox = spacing**3
    arg = np.argmax(level_prob, axis=0).astype(np.int32) + 1
    lab = np.where(vert, arg, 0)
    out = np.zeros_like(lab)
    k0, k1 = k_range
    for c in np.unique(lab):
        if c == 0:
            continue
        comp, n = ndimage.label(lab == c)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
        objs = ndimage.find_objects(comp)
        big = sizes.max()
        for i in range(n):
            at_edge = objs[i][0].start <= k0 or objs[i][0].stop >= k1
            min_mm3 = MIN_PARTIAL_BODY_MM3 if at_edge else MIN_BODY_MM3
            if sizes[i] >= 0.3 * big and sizes[i] * vox >= min_mm3:
                out[comp == i + 1] = c
    out = _grow(out, vert)
    ids = [int(i) for i in np.unique(out) if i]
    if not ids:
        return out
    cents = ndimage.center_of_mass(np.ones_like(out), out, ids)
    order = [i for _, i in sorted(zip([-c[0] for c in cents], ids, strict=True))]
    remap = np.zeros(out.max() + 1, np.int32)
    for r, i in enumerate(order):
        remap[i] = r + 1
    return remap[out]


def _clean_vertebra_mask(vert: np.ndarray, spacing: float, k_range, link_mm: float = 12.0) -> np.ndarray:
    """Keep the spinal column only: start from the largest bone component and chain in the
    components lying within ``link_mm`` of it (vertebrae separated by a disc), so bone-like specks
    of the pelvis, sternum or scapulae do not become vertebrae."""
    comp, n = ndimage.label(vert)
    if n == 0:
        return vert
    sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:] * spacing**3
    objs = ndimage.find_objects(comp)
    k0, k1 = k_range
    cand = np.zeros(n + 1, bool)
    for i in range(n):
        at_edge = objs[i][0].start <= k0 or objs[i][0].stop >= k1
        cand[i + 1] = sizes[i] >= (MIN_PARTIAL_BODY_MM3 if at_edge else MIN_BODY_MM3)
    keep = np.zeros(n + 1, bool)
    keep[int(np.argmax(sizes)) + 1] = True
    reach = max(1, int(round(link_mm / spacing)))
    while True:
        near = ndimage.binary_dilation(keep[comp], iterations=reach)
        new = np.unique(comp[near])
        new = [c for c in new if c and cand[c] and not keep[c]]
        if not new:
            break
        keep[new] = True
    return keep[comp]


def label_vertebrae(
    sem: np.ndarray, level_prob: np.ndarray, spacing: float, scan_k_range: tuple[int, int] | None = None
) -> dict:
    """Instances and levels on the coarse grid.

    sem: uint8 argmax of the semantic classes; level_prob: float (N_LEVELS, *sem.shape) softmax of
    the level channels; spacing: coarse voxel size in mm. Returns a dict with ``vertebrae`` (int16
    VerSe ids), ``levels`` (cranial -> caudal), ``qc``, ``rib_pairs``, ``partial_levels``.
    """
    k_range = scan_k_range or (0, sem.shape[0])
    # work inside the bone's bounding box (+ 32 mm for the rib heads): the morphology below is the
    # slow part and the rest of the body holds no vertebra
    bone = (sem == BODY) | (sem == POSTERIOR)
    if bone.any():
        m = int(round(32.0 / spacing))
        box = []
        for ax in range(3):
            nz = np.flatnonzero(bone.any(axis=tuple(a for a in range(3) if a != ax)))
            box.append(slice(max(0, nz[0] - m), min(sem.shape[ax], nz[-1] + 1 + m)))
        box = tuple(box)
        if any(b.stop - b.start < n for b, n in zip(box, sem.shape, strict=True)):
            kr = (k_range[0] - box[0].start, k_range[1] - box[0].start)
            res = label_vertebrae(sem[box], level_prob[(slice(None), *box)], spacing, kr)
            full = np.zeros(sem.shape, np.int16)
            full[box] = res["vertebrae"]
            res["vertebrae"] = full
            return res
    vox = spacing**3
    qc: list[str] = []
    vert = _clean_vertebra_mask((sem == BODY) | (sem == POSTERIOR), spacing, k_range)
    inst = _instances_from_levels(vert, level_prob, spacing, k_range)
    n_inst = int(inst.max())
    if n_inst == 0:
        return {
            "vertebrae": np.zeros(sem.shape, np.int16),
            "levels": [],
            "qc": ["no_spine: no vertebra found"],
            "rib_pairs": 0,
            "rib_levels": [],
            "partial_levels": [],
        }
    # votes: mean log-probability of each level over the instance's voxels
    m = inst > 0
    idx = inst[m] - 1
    cnt = np.maximum(np.bincount(idx, minlength=n_inst), 1)
    votes = np.zeros((n_inst, N_LEVELS))
    for c in range(N_LEVELS):
        lp = np.log(np.clip(level_prob[c][m], 1e-4, 1.0))
        votes[:, c] = np.bincount(idx, weights=lp, minlength=n_inst) / cnt

    # rib anchor: ribs whose medial end touches a vertebra
    rib_lab, n_rib = _components(sem == RIB)
    ribs_on = {}  # instance -> set of sides
    if n_rib:
        dist, (ki, ji, ii) = ndimage.distance_transform_edt(inst == 0, return_indices=True)
        rsizes = np.bincount(rib_lab.ravel(), minlength=n_rib + 1)[1:] * vox
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
    paired = [r for r in rib_inst if len(ribs_on[r]) == 2]  # one-sided "ribs" are too often specks
    last_rib = max(paired) - 1 if paired else None  # 0-based, caudal-most vertebra with a rib pair
    if last_rib is not None:
        # the last rib pair anchors T12 only when a whole rib-free vertebra shows below it: a scan that
        # ends at the lowest rib-bearing vertebra (most chest CTs) does not show where the ribs end
        below = np.flatnonzero((inst == last_rib + 2).any(axis=(1, 2))) if last_rib + 1 < n_inst else []
        if len(below) == 0 or below[0] <= k_range[0] + int(round(4.0 / spacing)):
            last_rib = None
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
    scores = []
    for o in range(-n_inst + 1, N_LEVELS):
        s = 0.0
        for r in range(n_inst):
            c = o + r
            s += votes[r, c] if 0 <= c < N_LEVELS else floor
        if last_rib is not None and o + last_rib == LEVELS.index(19):
            s += RIB_ANCHOR_NATS
        if sacrum_below is not None and o + sacrum_below == LEVELS.index(24):
            s += SACRUM_ANCHOR_NATS
        scores.append(s)
        if best is None or s > best[0]:
            best = (s, o)
    o = best[1]
    runner_up = sorted(scores)[-2] if len(scores) > 1 else -np.inf
    margin = best[0] - runner_up
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
        qc.append(
            f"rib_anchor: the last rib-bearing vertebra was labelled {lv.name(names[last_rib])}, not T12"
            if names[last_rib] in lv.NAMES
            else "rib_anchor: last rib-bearing vertebra out of range"
        )
    if last_rib is not None and sacrum_below is not None:
        n_lumbar = sacrum_below - last_rib
        if n_lumbar != 5:
            qc.append(f"lumbar_count: {n_lumbar} vertebrae between the last rib and the sacrum (expected 5)")
    top_cervical = names[0] in range(1, 8)
    if top_cervical and rib_inst and len(rib_inst) in (11, 13):
        qc.append(f"rib_count: {len(rib_inst)} rib-bearing vertebrae (expected 12); levels counted from the last rib")
    if last_rib is None and sacrum_below is None:
        qc.append("no_anchor: neither the last rib nor the sacrum is in view; levels rest on the model's votes")
    # the model's names always carry label_uncertain: its votes were never checked against real chest CT
    # with readers' landmarks (39% of levels identified, Testing/benchmarks/real_ct.py); the flag says why
    # a doubt is sharper here: no anchor fixes the names, anchors disagree, or the runner-up is close
    # (the threshold of the classical naming, naming.py)
    doubts = [f.split(":")[0] for f in qc if f.startswith(("no_anchor", "rib_anchor", "lumbar_count", "rib_count"))]
    if doubts or margin < MARGIN_NATS:
        why = ", ".join(doubts) if doubts else f"runner-up naming {margin:.1f} nats behind"
        qc.append(f"label_uncertain: the model's level names may be off by one or more ({why})")
    else:
        qc.append("label_uncertain: the model's level names are not validated on real CT; check them")

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
    return {
        "vertebrae": out,
        "levels": levels_out,
        "qc": qc,
        "rib_pairs": int(rib_pairs),
        "rib_levels": [int(names[r - 1]) for r in rib_inst if names[r - 1]],
        "partial_levels": partial,
    }
