"""Evidence for vertebra labels: ribs, whether a missing rib can be seen, body sizes.

Ribs are found where they leave the spine: long thin bones crossing a strip 44-58 mm lateral to
the canal near the canal's depth, reaching >= 80 mm laterally (>= 60 mm where the scan cuts them;
transverse processes stop short of that; the iliac wing is far larger). Each crossing is placed in
every segment's slab (between its tilted disc planes), and naming.py counts ribs against vertebrae
in order rather than trusting where one crossing lies: in a kyphotic upper thorax a rib tubercle
sits up to ~20 mm above its own vertebra. A missing rib only counts as absent where the image
extends far enough laterally, posteriorly and caudally to show it. The naming itself, one global
decision over all anchors with its runner-up and margin, is naming.py.
"""

from __future__ import annotations

import numpy as np
from OsteoAIBaseLib import levels as lv
from scipy import ndimage as ndi

from . import carina, naming

STRIP_MM = (44.0, 58.0)
REACH_MM = 80.0
CAUDAL_ROOM_MM = 16.0
REACH_CUT_MM = 60.0  # transverse processes end ~50 mm from the midline
FIRST_RIB_REACH_MM = 62.0
FORWARD_MM = 60.0  # the window's front edge is 70 mm in front of the canal
REACH_VOXELS = 3
RIB_HU = 180.0  # ribs (cortex + marrow averaged on ~2 mm) stay above it, enhanced organs mostly below
# A rib's brightest tenth is its cortex, well clear of RIB_HU (>= 256 on the real scans, 5 mm soft
# kernel the lowest); an enhanced liver (~170 HU) whose noise tips speckles over RIB_HU sits just at it.
RIB_CORE_HU = 225.0
SACRUM_BONE_HU = 150.0
SACRUM_REACH_MM = 80.0  # the sacroiliac joints lie 40-60 mm from the midline, the iliac bones beyond
JOINT_GAP_MM = 4.0
SACRUM_SEGMENTS_TRIED = 6


def find_ribs(work, canal_ji, k0, ws) -> list[dict]:
    """Rib crossings as dicts (side, k_top, k_bottom, reach_mm, crossing_kji, volume_cm3); whether a missing
    rib could have been seen is judged per vertebra (``_assessable``)."""
    nk, nj, ni = work.shape
    r = np.clip(np.arange(nk) - k0, 0, len(canal_ji) - 1)
    cj, ci = canal_ji[r, 0], canal_ji[r, 1]
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
    for side, name in ((1, "left"), (-1, "right")):
        d = side * (Ii - ci[:, None, None]) * ws
        dj = (J - cj[:, None, None]) * ws
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
            reach = _reach(dm[m])
            # a rib running out of the scan (top or bottom slice) is seen only in part
            cut = sl[0].start == 0 or sl[0].stop == nk
            if reach < (REACH_CUT_MM if cut else REACH_MM) and not _runs_forward(
                m, dm, np.broadcast_to(dj, lab.shape)[sl], reach
            ):
                continue
            core_hu = float(np.percentile(work[sl][m], 90))
            if core_hu < RIB_CORE_HU:
                continue
            s_in = m & np.broadcast_to(strip, lab.shape)[sl]
            if s_in.sum() < 2:
                continue
            kk = np.nonzero(s_in.any(axis=(1, 2)))[0] + sl[0].start
            if (kk.max() - kk.min()) * ws > 35:  # a plate, not a rib crossing
                continue
            k_top = int(kk.max())
            centre = np.argwhere(s_in).mean(0) + [x.start for x in sl]
            # the rib's most medial part in the window, nearest its head on the spine
            med = m & (dm <= dm[m].min() + 4.0)
            medial = np.argwhere(med).mean(0) + [x.start for x in sl]
            ribs.append(
                {
                    "side": name,
                    "k_top": k_top,
                    "k_bottom": int(kk.min()),
                    "reach_mm": reach,
                    "crossing_kji": [float(x) for x in centre],
                    "medial_kji": [float(x) for x in medial],
                    "volume_cm3": round(float(vol_cm3), 1),
                    "core_hu": round(core_hu),
                }
            )
    return ribs


def _reach(lateral_mm: np.ndarray) -> float:
    """How far a bone reaches from the midline, read at its REACH_VOXELS-th farthest voxel: a rib
    runs on with a full cross-section, while image noise tips single voxels at the end of a
    transverse process over the bone threshold and would otherwise stretch it past REACH_CUT_MM."""
    if lateral_mm.size <= REACH_VOXELS:
        return float(lateral_mm.min(initial=0.0))
    return float(np.partition(lateral_mm, -REACH_VOXELS)[-REACH_VOXELS])


def _runs_forward(m, dm, djm, reach: float) -> bool:
    """A short rib that curves forward: the first rib reaches only ~65-75 mm from the canal but runs
    on to the manubrium, far in front of the canal, where no transverse process goes."""
    return bool(reach >= FIRST_RIB_REACH_MM and djm[m].min() <= -FORWARD_MM)


def _assessable(work, k_ranges: dict[int, tuple[int, int] | None], canal_ji, k0, ws) -> dict[int, bool]:
    """Whether a missing rib at a vertebra means 'no rib' rather than 'rib out of view'.

    ``k_ranges``: each segment's first and last slice of its *body* (posterior elements hang far
    below their body).
    """
    nk, nj, ni = work.shape
    out = {}
    for index, kr in k_ranges.items():
        if kr is None:
            out[index] = False
            continue
        r = np.clip(np.arange(kr[0], kr[1] + 1) - k0, 0, len(canal_ji) - 1)
        cj, ci = canal_ji[r, 0], canal_ji[r, 1]
        room_lat = max((ni - 1 - ci.max()), ci.min()) * ws
        room_post = (nj - 1 - cj.max()) * ws
        # the whole body must be in view (a rib head sits on it), with room below it to see a rib
        # descending from its head
        in_k = kr[0] * ws >= CAUDAL_ROOM_MM and (nk - 1 - kr[1]) * ws >= 4
        out[index] = bool(in_k and room_lat >= REACH_MM + 4 and room_post >= 25)
    return out


def sacral_segments(work, body, segs: list[int], ws: float, boxes=None) -> list[int]:
    """The segments (of ``segs``, cranial -> caudal) whose body is joined to the pelvis: the sacrum.

    In axial slices the sacrum's alae run out from its body to the sacroiliac joints and the iliac
    bones beyond them, so bone joined to the body (the joint's 2-4 mm cleft bridged) reaches
    SACRUM_REACH_MM from the midline on both sides; a lumbar body's own bone, transverse processes
    included, stops within ~50 mm, the psoas lying between it and the iliac crest. Only bone in
    front of the body's back wall counts (the laminae and the ribs' far arcs lie behind it), in two
    adjacent slices. Only the caudal segments are tried: the sacrum ends the spine. ``boxes``:
    ``ndimage.find_objects(body)`` when already at hand.
    """
    r = max(1, int(round(0.5 * JOINT_GAP_MM / ws)))
    yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
    disk = yy * yy + xx * xx <= r * r
    boxes = ndi.find_objects(np.asarray(body, np.int32)) if boxes is None else boxes
    out = []
    for s in segs[-SACRUM_SEGMENTS_TRIED:]:
        box = boxes[s - 1] if s <= len(boxes) else None
        if box is None:
            continue
        joined = []
        for k in range(box[0].start, box[0].stop):
            sl = body[k] == s
            if sl.any():  # slices of the segment's body only, as they follow one another
                joined.append(_joined_to_pelvis(work[k], sl, disk, ws))
        if any(a and b for a, b in zip(joined[:-1], joined[1:], strict=False)):
            out.append(s)
    return out


def _joined_to_pelvis(sl_work: np.ndarray, sl_body: np.ndarray, disk: np.ndarray, ws: float) -> bool:
    """One axial slice: does bone joined to the body reach SACRUM_REACH_MM on both sides?"""
    jj, ii = np.nonzero(sl_body)
    if len(jj) < 10:
        return False
    front = np.arange(sl_work.shape[0])[:, None] <= jj.max() + int(round(10.0 / ws))
    bone = ndi.binary_closing(sl_work > SACRUM_BONE_HU, structure=disk) & front
    lab, _n = ndi.label(bone, structure=np.ones((3, 3)))
    ids = np.unique(lab[sl_body])
    ids = ids[ids > 0]
    if len(ids) == 0:
        return False
    d = (np.nonzero(np.isin(lab, ids))[1] - ii.mean()) * ws
    return bool(min(d.max(), -d.min()) >= SACRUM_REACH_MM)


def label_vertebrae(work, lab_w, seg_info, canal_ji, k0, ws, body_w=None, planes=None) -> dict:
    """Map segment indices (1 = most caudal) to VerSe ids, with QC flags (see naming.py)."""
    seg_info = sorted(seg_info, key=lambda s: -s["index"])  # cranial -> caudal from here on
    segs = [s["index"] for s in seg_info]
    body = lab_w if body_w is None else body_w
    ribs = find_ribs(work, canal_ji, k0, ws)
    boxes = ndi.find_objects(np.asarray(body, np.int32))
    k_ranges = {
        i: (boxes[i - 1][0].start, boxes[i - 1][0].stop - 1) if i <= len(boxes) and boxes[i - 1] else None for i in segs
    }
    can = _assessable(work, k_ranges, canal_ji, k0, ws)
    rib_t = [slab_positions(np.asarray(rb["crossing_kji"]), segs, planes or []) for rb in ribs]
    # ribs are counted in their order along the spine, not by height: in a kyphotic upper thorax
    # the first rib can cross the strip below the second one in scanner z; their order is read
    # nearest their heads, where the tilted disc planes still hold
    head_t = [slab_positions(np.asarray(rb["medial_kji"]), segs, planes or []) for rb in ribs]
    order = sorted(range(len(ribs)), key=lambda q: naming.spine_position(head_t[q]))
    ribs = [ribs[q] for q in order]
    rib_ev = [naming.RibEvidence(rb["side"], rib_t[q]) for rb, q in zip(ribs, order, strict=True)]
    evidence = []
    for s in seg_info:
        kr = k_ranges[s["index"]]
        whole = kr is not None and kr[0] * ws >= 4 and (work.shape[0] - 1 - kr[1]) * ws >= 4
        evidence.append(
            naming.SegmentEvidence(
                assessable=can[s["index"]], volume_cm3=s["body_voxels"] * ws**3 / 1000 if whole else None
            )
        )
    sacral = sacral_segments(work, body, segs, ws, boxes)
    first_sacral = segs.index(sacral[0]) if sacral else None
    if first_sacral:  # the segment above the sacrum is L5
        evidence[first_sacral - 1].sacrum_below = True
    found = carina.find_carina(work, canal_ji, k0, ws)
    carina_t = None
    if found is not None:
        r = int(np.clip(found["k"] - k0, 0, len(canal_ji) - 1))
        # the carina's level is read straight back from it, on the canal at the same height
        carina_t = slab_positions(np.array([found["k"], *canal_ji[r]], float), segs, planes or [])
    named = naming.name_segments(evidence, rib_ev, carina_t)
    qc = list(named.qc)
    mapping = {}
    dropped = 0
    for s, v in zip(segs, named.ids, strict=True):
        if v < 1 or v > 24:  # the sacrum, or a segment below it
            dropped += 1
            v = 0
        mapping[s] = int(v)
    # segments dropped at and below a sacrum the scan shows are the sacrum, not a doubt about the names
    below_sacrum = first_sacral is not None and all(mapping[x] or q >= first_sacral for q, x in enumerate(segs))
    if dropped and not below_sacrum:
        qc.append(f"label_uncertain: {dropped} segment(s) below L5 dropped (sacrum or L6)")
    rib_pairs = int(sum(1 for e in evidence if e.rib_sides == 2))
    for q, rb in enumerate(ribs):
        i = named.rib_segment.get(q)
        rb["level"] = lv.name(mapping[segs[i]]) if i is not None and mapping.get(segs[i]) else None
    return {
        "mapping": mapping,
        "qc": qc,
        "anchor": named.anchor,
        "rib_pairs": rib_pairs,
        "naming": {
            "margin_nats": None if not np.isfinite(named.margin) else round(named.margin, 2),
            "runner_up": [lv.NAMES.get(v, "?") for v in (named.runner_up or [])],
            "evidence": [
                {
                    "rib_sides": e.rib_sides,
                    "assessable": e.assessable,
                    "volume_cm3": None if e.volume_cm3 is None else round(e.volume_cm3, 1),
                }
                for e in evidence
            ],
        },
        "ribs": ribs,
        "carina_kji": found["kji"] if found else None,
        "sacrum_segments": len(sacral),
    }


def slab_positions(p: np.ndarray, segs: list[int], planes: list) -> np.ndarray:
    """Height of work-grid point ``p`` in each segment's slab: 0 at its lower disc plane, 1 at its
    upper one (segment index s lies between planes s-2 and s-1, planes ordered caudal -> cranial)."""
    if not planes:
        return np.full(len(segs), 0.5)
    gaps = [float((planes[q + 1][0] - planes[q][0]) @ planes[q][1]) for q in range(len(planes) - 1)]
    pitch = float(np.median(gaps)) if gaps else 12.0
    out = []
    for s in segs:
        below = planes[s - 2] if s >= 2 else None
        above = planes[s - 1] if s - 1 < len(planes) else None
        if below is not None and above is not None:
            h = max(float((above[0] - below[0]) @ below[1]), 1.0)
            out.append(float((p - below[0]) @ below[1]) / h)
        elif above is not None:
            out.append(1.0 + float((p - above[0]) @ above[1]) / pitch)
        else:
            out.append(float((p - below[0]) @ below[1]) / pitch)
    return np.asarray(out)
