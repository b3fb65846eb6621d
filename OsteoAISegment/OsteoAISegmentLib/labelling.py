"""Vertebra labels from anatomy: the last rib-bearing vertebra is T12.

Ribs are found where they leave the spine: long thin bones crossing a strip 44-58 mm lateral to
the canal near the canal's depth, reaching >= 80 mm laterally (transverse processes stop short
of that; the iliac wing is far larger). Each rib is assigned to the vertebra at the top of its
crossing (ribs descend from their heads). Anchors, in order of trust: the last rib-bearing
vertebra with rib-free vertebrae below it (= T12); the first rib-bearing vertebra below a
rib-free one (= T1); ribs whose end is out of view: the lowest vertebra is T12; no rib at all:
lumbar, centred on L3. The last two are flagged as uncertain. A missing rib only counts as
absent where the image extends far enough laterally, posteriorly and caudally to show it.
"""

from __future__ import annotations

import numpy as np
from OsteoAILib import levels as lv
from scipy import ndimage as ndi

STRIP_MM = (44.0, 58.0)
REACH_MM = 80.0
RIB_HU = 180.0  # ribs (cortex + marrow averaged on ~2 mm) stay above it, enhanced organs mostly below
T12, T1 = 19, 8


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
    bone = work > RIB_HU
    # an enhanced solid organ (liver, spleen: up to ~200 HU at low kVp) can clear the bone
    # threshold and swallow the ribs lying on it; ribs are thin, organs thick: drop what survives
    # an opening by a ~12 mm ball
    rb = max(2, int(round(6.0 / ws)))
    zz, yy, xx = np.ogrid[-rb : rb + 1, -rb : rb + 1, -rb : rb + 1]
    ball = zz * zz + yy * yy + xx * xx <= rb * rb
    bone &= ~ndi.binary_opening(bone, structure=ball)
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


def _assessable(work, lab_w, seg_info, canal_ji, k0, ws) -> dict[int, bool]:
    """Whether a missing rib at a vertebra means 'no rib' rather than 'rib out of view'.

    ``lab_w`` should be the body labelmap: posterior elements hang far below their body.
    """
    nk, nj, ni = work.shape
    out = {}
    for s in seg_info:
        ks = np.nonzero((lab_w == s["index"]).any(axis=(1, 2)))[0]
        if len(ks) == 0:
            out[s["index"]] = False
            continue
        r = np.clip(ks - k0, 0, len(canal_ji) - 1)
        cj, ci = canal_ji[r, 0], canal_ji[r, 1]
        room_lat = max((ni - 1 - ci.max()), ci.min()) * ws
        room_post = (nj - 1 - cj.max()) * ws
        # the whole body must be in view (a rib head sits on it)
        in_k = ks.min() * ws >= 4 and (nk - 1 - ks.max()) * ws >= 4
        out[s["index"]] = bool(in_k and room_lat >= REACH_MM + 4 and room_post >= 25)
    return out


def label_vertebrae(work, lab_w, seg_info, canal_ji, k0, ws, bc, body_w=None) -> dict:
    """Map segment indices (1 = most caudal) to VerSe ids, with QC flags."""
    seg_info = sorted(seg_info, key=lambda s: -s["index"])  # cranial -> caudal from here on
    segs = [s["index"] for s in seg_info]
    ribs, _sides = find_ribs(work, lab_w, canal_ji, k0, ws, bc)
    can = _assessable(work, lab_w if body_w is None else body_w, seg_info, canal_ji, k0, ws)
    bearing = {s: set() for s in segs}
    for rb in ribs:
        if rb["segment"] in bearing:
            bearing[rb["segment"]].add(rb["side"])
    has = [len(bearing[s]) > 0 for s in segs]
    free = [can[s] and not has[i] for i, s in enumerate(segs)]
    ids, anchor, qc = assign_levels(has, free)
    mapping = {}
    dropped = 0
    for s, v in zip(segs, ids, strict=True):
        if v < 1 or v > 24:  # below L5: sacrum or a transitional L6 that the labels cannot tell apart
            dropped += v > 24
            v = 0
        mapping[s] = int(v)
    if dropped:
        qc.append(f"label_uncertain: {dropped} segment(s) below L5 dropped (sacrum or L6)")
    rib_pairs = int(sum(1 for s in segs if len(bearing[s]) == 2))
    return {"mapping": mapping, "qc": qc, "anchor": anchor, "rib_pairs": rib_pairs,
            "ribs": [{**rb, "level": lv.name(mapping[rb["segment"]]) if mapping.get(rb["segment"]) else None}
                     for rb in ribs]}


def assign_levels(has: list[bool], free: list[bool]) -> tuple[list[int], str, list[str]]:
    """VerSe ids for vertebrae ordered cranial -> caudal, from where ribs were seen (``has``) and
    where their absence is certain (``free``). Returns (ids, anchor, qc)."""
    n = len(has)
    qc: list[str] = []
    if any(has):
        last = max(i for i in range(n) if has[i])
        first = min(i for i in range(n) if has[i])
        if any(free[last + 1 :]):
            ids = [T12 - (last - i) if i <= last else 20 + (i - last - 1) for i in range(n)]
            anchor = "last_rib=T12"
            if last + 1 < n and not free[last + 1]:
                qc.append("label_uncertain: the vertebra below the last rib pair is not fully assessable")
        elif first > 0 and any(free[:first]):
            ids = [T1 + (i - first) for i in range(n)]
            anchor = "first_rib=T1"
        else:
            # ribs seen, but their absence below cannot be confirmed (FOV cut): take the lowest
            # vertebra in view as T12, the usual target of a thoracolumbar scan
            ids = [T12 - (n - 1 - i) for i in range(n)]
            anchor = "lowest=T12"
            qc.append("label_uncertain: the field of view does not show where the ribs end; "
                      "the lowest vertebra is assumed to be T12")
        # the whole rib cage is in view when a rib-free vertebra shows above the first rib and
        # below the last one: then there should be 12 rib-bearing vertebrae
        if anchor == "last_rib=T12" and any(free[:first]):
            pairs = last - first + 1
            if pairs in (11, 13):
                qc.append(f"rib_count: {pairs} rib pairs found; labels may be shifted")
            elif pairs != 12:
                qc.append(f"label_uncertain: ribs found on {pairs} vertebrae of a thorax seen whole "
                          "(12 expected); some ribs were probably missed")
        gaps = [i for i in range(first, last + 1) if not has[i]]
        if len(gaps) > 1:
            qc.append(f"label_uncertain: {len(gaps)} vertebrae between rib-bearing ones show no rib")
    else:
        # no rib: lumbar, centred on L3 (the centre of the lumbar spine) when nothing else tells
        anchor = "lumbar_centre_prior"
        qc.append("label_uncertain: no ribs visible; lumbar levels assumed, centred on L3")
        top = 22 - (n - 1) // 2
        top = min(max(top, 20), max(20, 24 - (n - 1)))
        ids = [top + i for i in range(n)]
    return ids, anchor, qc
