"""Vertebra labels from anatomy: the last rib-bearing vertebra is T12.

Ribs are found where they leave the spine: long thin bones crossing a strip 44-58 mm lateral to
the canal near the canal's depth, reaching >= 80 mm laterally (transverse processes stop short
of that; the iliac wing is far larger). Each rib is assigned to the vertebra at the top of its
crossing (ribs descend from their heads). Anchors, in order of trust: the last rib-bearing
vertebra with rib-free vertebrae below it (= T12); the first rib-bearing vertebra below a
rib-free one (= T1); otherwise body size order, flagged as uncertain.
"""

from __future__ import annotations

import numpy as np
from OsteoAILib import levels as lv
from scipy import ndimage as ndi

STRIP_MM = (44.0, 58.0)
REACH_MM = 80.0
T12, T1 = 19, 8
# typical lumbar body AP depth (mm) by level, for the no-rib fallback (order only matters)
_LUMBAR_DEPTH = {20: 33.0, 21: 34.5, 22: 35.5, 23: 36.0, 24: 36.0}


def _slice_segment(lab_w, bc, k0, ws) -> np.ndarray:
    """Segment index at the body centre of each slice (0 where none)."""
    nk = lab_w.shape[0]
    out = np.zeros(nk, int)
    for k in range(nk):
        r = int(np.clip(k - k0, 0, len(bc["body_j"]) - 1))
        j, i = int(round(bc["body_j"][r])), int(round(bc["body_i"][r]))
        sl = lab_w[k, max(0, j - 6) : j + 7, max(0, i - 6) : i + 7]
        v = sl[sl > 0]
        if len(v):
            out[k] = np.bincount(v).argmax()
    return out


def find_ribs(work, lab_w, canal_ji, k0, ws, bc) -> tuple[list[dict], dict]:
    """Rib crossings as dicts (side, segment, k_top) and per-side whether ribs were assessable."""
    nk, nj, ni = work.shape
    r = np.clip(np.arange(nk) - k0, 0, len(canal_ji) - 1)
    cj, ci = canal_ji[r, 0], canal_ji[r, 1]
    seg_k = _slice_segment(lab_w, bc, k0, ws)
    bone = work > 150
    J = np.arange(nj)[None, :, None]
    Ii = np.arange(ni)[None, None, :]
    ribs: list[dict] = []
    assess = {}
    for side, name in ((1, "left"), (-1, "right")):
        d = side * (Ii - ci[:, None, None]) * ws
        dj = (J - cj[:, None, None]) * ws
        # room to see a rib: the image must extend REACH_MM beyond the canal on this side
        edge = (ni - 1 - np.median(ci)) if side > 0 else np.median(ci)
        assess[name] = bool(edge * ws >= REACH_MM + 4)
        win = bone & (d >= STRIP_MM[0] - 4) & (d <= 120) & (dj >= -70) & (dj <= 40)
        strip = (d >= STRIP_MM[0]) & (d <= STRIP_MM[1]) & (dj >= -25) & (dj <= 25)
        lab, n = ndi.label(win)
        if n == 0:
            continue
        objs = ndi.find_objects(lab)
        for c, sl in enumerate(objs, start=1):
            m = lab[sl] == c
            vol_cm3 = m.sum() * ws**3 / 1000
            if vol_cm3 < 0.3 or vol_cm3 > 40:
                continue
            dm = np.where(m, np.broadcast_to(d, lab.shape)[sl], -1)
            if dm.max() < REACH_MM:
                continue
            s_in = m & np.broadcast_to(strip, lab.shape)[sl]
            if s_in.sum() < 2:
                continue
            kk = np.nonzero(s_in.any(axis=(1, 2)))[0] + sl[0].start
            if (kk.max() - kk.min()) * ws > 35:  # a plate, not a rib crossing
                continue
            k_top = int(kk.max())
            ribs.append({"side": name, "k_top": k_top, "segment": int(seg_k[k_top]) or int(seg_k[kk.min()]),
                         "volume_cm3": round(float(vol_cm3), 1)})
    return ribs, assess


def label_vertebrae(work, lab_w, seg_info, canal_ji, k0, ws, bc) -> dict:
    """Map segment indices (1 = most caudal) to VerSe ids, with QC flags."""
    seg_info = sorted(seg_info, key=lambda s: -s["index"])  # cranial -> caudal from here on
    segs = [s["index"] for s in seg_info]
    ribs, assess = find_ribs(work, lab_w, canal_ji, k0, ws, bc)
    bearing = {s: set() for s in segs}
    for rb in ribs:
        if rb["segment"] in bearing:
            bearing[rb["segment"]].add(rb["side"])
    has = [len(bearing[s]) > 0 for s in segs]
    qc: list[str] = []
    anchor = None
    can_see = assess.get("left", False) or assess.get("right", False)
    n = len(segs)
    ids: list[int] | None = None
    if any(has) and can_see:
        last = max(i for i in range(n) if has[i])
        first = min(i for i in range(n) if has[i])
        if last < n - 1 or (last == 0 and n == 1):
            # rib-free vertebrae below the last rib pair: it is T12
            ids = [T12 - (last - i) if i <= last else 20 + (i - last - 1) for i in range(n)]
            anchor = "last_rib=T12"
            if last == n - 1:
                qc.append("label_uncertain: no rib-free vertebra below the last rib; T12 assumed")
        elif first > 0:
            ids = [T1 + (i - first) for i in range(n)]
            anchor = "first_rib=T1"
        else:
            anchor = "ribs_all"
            qc.append("label_uncertain: every vertebra in view carries ribs; the lowest is assumed to be T12")
            ids = [T12 - (n - 1 - i) for i in range(n)]
        # rib pairs seen: only meaningful when the whole thorax is in view
        pairs = sum(1 for i in range(n) if has[i])
        if anchor == "last_rib=T12" and first > 0 and pairs in (11, 13):
            qc.append(f"rib_count: {pairs} rib pairs found; labels may be shifted")
        gaps = [i for i in range(first, last + 1) if not has[i]]
        if len(gaps) > 1:
            qc.append(f"label_uncertain: {len(gaps)} vertebrae between rib-bearing ones show no rib")
    else:
        anchor = "size_order"
        qc.append("label_uncertain: no ribs visible; levels guessed from vertebral size (lumbar assumed)")
        depths = []
        for s in seg_info:
            r = int(np.clip(round(s["center"][0]) - k0, 0, len(bc["depth_mm"]) - 1))
            depths.append(bc["depth_mm"][r])
        best, best_err = 0, np.inf
        for off in range(0, 6 - n if n <= 5 else 1):
            cand = [24 - off - (n - 1 - i) for i in range(n)]  # i = 0 is the most cranial
            if min(cand) < 20:
                continue
            ref = np.array([_LUMBAR_DEPTH[c] for c in cand])
            err = np.abs(np.asarray(depths) - ref).mean()
            if err < best_err:
                best, best_err = off, err
        ids = [24 - best - (n - 1 - i) for i in range(n)]
    mapping = {}
    for s, v in zip(segs, ids, strict=False):
        if v < 1:
            v = 0
        if v > 24:  # below L5: sacrum or a transitional L6 that the labels cannot tell apart
            qc.append("label_uncertain: a segment below L5 was dropped (sacrum or L6)")
            v = 0
        mapping[s] = int(v)
    rib_pairs = int(sum(1 for s in segs if len(bearing[s]) == 2))
    return {"mapping": mapping, "qc": qc, "anchor": anchor, "rib_pairs": rib_pairs,
            "ribs": [{**rb, "level": lv.name(mapping[rb["segment"]]) if mapping.get(rb["segment"]) else None}
                     for rb in ribs]}
