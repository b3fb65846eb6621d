"""Automatic reference-tissue ROIs for phantomless (internal) calibration.

Four tissues of known composition are found in the scan itself: air outside the body, the
subcutaneous fat ring, the paraspinal (erector spinae) muscles and the blood in the aorta. Their
measured CT numbers, fitted against the expected ones at the scan's kVp (``physics.reference_hu``),
undo the scanner's own HU scale and offset (``calibration.py``).

Design choices:
- Work on a sample of 16 axial slices spread over the spine (or the middle 80% of the scan without
  a segmentation), with masks built on ~1.5-2 mm block-mean pixels: the references are large and
  homogeneous, so this gives thousands of voxels in about a second on a 512x512x300 scan.
- Select tissue on a lightly smoothed image, erode the selection, and measure every raw voxel it
  covers with a robust mean: thresholds only decide *where* to measure, never clip the measured
  distribution.
- Two passes: air and fat (found with wide windows) give a preliminary linear HU map; muscle and
  blood are then selected with windows on that preliminary scale, so a linear change of the
  scanner's HU scale (HU' = a HU + b) moves every window with it and selects the same voxels.
- Air is measured away from the body, anything denser than air (table, blankets, clothing folds)
  and the image and reconstruction-circle edges, on the anterior side (the table is posterior).
  Air partly clipped by the scanner at its minimum value is estimated from the unclipped upper
  part of its distribution (normal censored below); mostly clipped air is not used.
- The aorta is the best round soft-tissue or enhanced section anterior-left of the vertebral body,
  kept where it agrees with its neighbours along the tube; it is only searched beside a segmented
  spine (without one, the vertebral body itself looks too much like an enhanced aorta).
- Each voxel's depth in the body (1 - r^2 over the slice's body ellipse, 0 at the skin, 1 at the
  centre) is recorded so that the calibration can see beam-hardening cupping.
"""

from __future__ import annotations

import numpy as np
from OsteoAIBaseLib.volume import Volume
from scipy import ndimage as ndi
from scipy.special import ndtri  # the standard normal quantile, norm.ppf's own (scipy.stats takes 0.4 s to import)

from .reference_table import REFERENCE_NAMES

N_SLICES = 16
MAX_CLIPPED = 0.75  # air clipped beyond this fraction is unusable (its level is below the clip)
MAX_VOXELS = 200_000  # per reference: more adds time, not precision
MIN_VOXELS = 30  # fewer voxels than this and the reference is not trusted
BODY_THRESHOLD_HU = -500.0  # air vs anything else; safe under any plausible HU scale change
PADDING_BELOW_HU = -1500.0  # values outside the reconstruction circle (-2048, -3024...)

# Windows in (preliminary) calibrated HU used to *select* tissue; measurement is unwindowed.
FAT_WINDOW = (-220.0, -35.0)
MUSCLE_WINDOW = (0.0, 110.0)
BLOOD_WINDOW = (10.0, 800.0)
BONE_ABOVE_HU = 220.0
CONTRAST_ABOVE_HU = 150.0


def _disk(radius_px: float) -> np.ndarray:
    r = max(int(np.ceil(radius_px)), 1)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= radius_px * radius_px + 1e-9


def _sample_slices(vol: Volume, seg) -> np.ndarray:
    nk = vol.shape[0]
    lo, hi = 0, nk - 1
    if seg is not None and getattr(seg, "vertebrae", None) is not None:
        ks = np.nonzero(np.asarray(seg.vertebrae).reshape(nk, -1).any(axis=1))[0]
        if ks.size:
            lo, hi = int(ks.min()), int(ks.max())
    elif nk > 8:
        # Without a segmentation, skip the scan's outer slices (often partial, cone-beam edge).
        lo, hi = int(0.1 * nk), int(0.9 * nk)
    n = min(N_SLICES, hi - lo + 1)
    return np.unique(np.round(np.linspace(lo, hi, n)).astype(int))


def _robust_stats(values: np.ndarray, clip_value: float | None = None) -> tuple[float, float]:
    """Robust location and MAD-scaled SD; with ``clip_value``, a normal censored at the clip is assumed."""
    v = np.asarray(values, dtype=float)
    if clip_value is not None:
        f = float(np.mean(v <= clip_value))
        if 0.25 < f <= MAX_CLIPPED:
            qa, qb = f + (1 - f) * 0.25, f + (1 - f) * 0.75
            xa, xb = np.quantile(v, [qa, qb])
            za, zb = ndtri(qa), ndtri(qb)
            sd = (xb - xa) / (zb - za)
            return float(xb - zb * sd), float(sd)
    # Median and MAD locate the bulk; the mean within 3 SD of it is continuous (the median of
    # integer HU is quantised to 0.5 HU) and still ignores stray voxels of another tissue.
    med = float(np.median(v))
    sd = float(1.4826 * np.median(np.abs(v - med)))
    if sd > 0:
        core = v[np.abs(v - med) <= 3.0 * sd]
        if core.size:
            return float(core.mean()), sd
    return med, sd


class _Spine:
    """Per-slice spine landmarks (pixels): midline i, front and back of the body, spinous tip.

    On a disc slice the body is absent from the segmentation: the nearest slice holding a body
    (within 15 mm) lends its landmarks and its body outline (the disc has about the same footprint).
    """

    def __init__(self, vol: Volume, seg, ks: np.ndarray, bodies_masks: dict):
        self.rows: dict[int, tuple[float, float, float, float] | None] = {int(k): None for k in ks}
        vert = None if seg is None else getattr(seg, "vertebrae", None)
        bod = None if seg is None else getattr(seg, "bodies", None)
        if vert is None:
            return
        vert = np.asarray(vert)
        bod = None if bod is None else np.asarray(bod)
        # Each body's footprint (its outline projected over its slices) and k-range: steadier
        # landmarks than one slice's outline, which shrinks at the endplates.
        foot: dict[int, tuple[int, int, np.ndarray]] = {}
        if bod is not None:
            from .label_boxes import cached_label_boxes  # shared with the per-level QC that follows

            for n, box in enumerate(cached_label_boxes(seg.bodies), start=1):
                if box is None:
                    continue
                fp = np.zeros(bod.shape[1:], bool)
                fp[box[1:]] = (bod[box] == n).any(axis=0)
                foot[n] = (box[0].start, box[0].stop - 1, fp)
        reach = 15.0 / vol.spacing[2]
        for k in ks:
            k = int(k)
            v = vert[k] > 0
            if v.sum() < 10:
                continue
            jj, ii = np.nonzero(v)
            i_mid = float(np.median(ii))
            near = np.abs(ii - i_mid) < max(3, 0.15 * (ii.max() - ii.min() + 1))
            j_tip = float(jj[near].max()) if near.any() else float(jj.max())
            kb = None
            if foot:
                here = bod[k][bod[k] > 0]
                if here.size:
                    u, c = np.unique(here, return_counts=True)
                    kb = int(u[np.argmax(c)])
                else:
                    gap = {lab: max(k0 - k, k - k1, 0) for lab, (k0, k1, _) in foot.items()}
                    nearest = min(gap, key=gap.get)
                    kb = nearest if gap[nearest] <= reach else None
            if kb is not None:
                b = foot[kb][2]
                bj, bi = np.nonzero(b)
                j_front, j_back = float(bj.min()), float(bj.max())
                i_mid = float(np.median(bi))
                bodies_masks[k] = b
            else:
                j_front = float(jj.min())
                j_back = j_front + 0.45 * (j_tip - j_front)
            self.rows[k] = (i_mid, j_front, j_back, j_tip)
        known = [k for k, r in self.rows.items() if r is not None]
        for k in list(self.rows):
            if self.rows[k] is None and known:
                self.rows[k] = self.rows[min(known, key=lambda x: abs(x - k))]

    def get(self, k: int):
        return self.rows.get(int(k))


def _spine_from_bone(sm: np.ndarray, body: np.ndarray, spacing_ji: tuple[float, float]):
    """Seg-free fallback: the bone column nearest the body's midline in its posterior part.

    Returns (landmarks, bone mask of the spine) or None.
    """
    sj, si = spacing_ji
    jj, ii = np.nonzero(body)
    if jj.size == 0:
        return None
    i_c, j_c = float(np.median(ii)), float(np.median(jj))
    bone = (sm > 150.0) & body
    strip = np.zeros_like(bone)
    w = int(round(15.0 / si))
    strip[:, max(0, int(i_c) - w) : int(i_c) + w + 1] = True
    depth = jj.max() - jj.min()
    strip[: int(j_c - 0.1 * depth), :] = False  # the sternum is anterior, the spine posterior
    lab, n = ndi.label(bone)
    ids = np.unique(lab[bone & strip])
    ids = ids[ids > 0]
    if ids.size == 0:
        return None
    spine = ndi.binary_fill_holes(np.isin(lab, ids))
    bj, bi = np.nonzero(spine & strip)
    if bj.size < 10:
        return None
    rows = float(np.median(bi)), float(bj.min()), float(bj.min() + 0.45 * (bj.max() - bj.min())), float(bj.max())
    return rows, spine


def _body_mask(sm: np.ndarray, spacing_ji) -> np.ndarray:
    obj = sm > BODY_THRESHOLD_HU
    obj = ndi.binary_opening(obj, structure=_disk(2.0 / min(spacing_ji)))
    lab, n = ndi.label(obj)
    if n == 0:
        return obj
    sizes = ndi.sum(obj, lab, index=np.arange(1, n + 1))
    body = lab == (int(np.argmax(sizes)) + 1)
    # A body cut by the image edge leaves its lungs and bowel gas open to the outside; closing
    # the touched edges lets hole filling count them as inside (never as outside air).
    for edge in ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)):
        if body[edge].any():
            body[edge] = True
    return ndi.binary_fill_holes(body)


def _blood_in_slice(cal_sm, body, spine, bodies_mask, spacing_ji, prefer_enhanced: bool):
    """Best round blood-filled tube section anterior-left of the vertebral body: (j, i, r_px, score)."""
    sj, si = spacing_ji
    px = min(sj, si)
    i_mid, j_front, j_back, _ = spine
    depth = max(j_back - j_front, 10.0 / sj)
    region = np.zeros_like(body)
    j0 = int(max(0, j_front - 45.0 / sj))
    j1 = int(j_front + 0.55 * depth)
    i0 = int(max(0, i_mid - 12.0 / si))
    i1 = int(i_mid + 45.0 / si)
    region[j0 : j1 + 1, i0 : i1 + 1] = True
    region &= body
    if bodies_mask is not None:
        excl = ndi.binary_dilation(bodies_mask, structure=_disk(2.0 / px))
    else:
        excl = np.zeros_like(body)
        excl[int(j_front) :, :] = ndi.binary_dilation(cal_sm > BONE_ABOVE_HU + 100, structure=_disk(2.0 / px))[
            int(j_front) :, :
        ]
    lo = CONTRAST_ABOVE_HU if prefer_enhanced else BLOOD_WINDOW[0]
    hi = BLOOD_WINDOW[1] if prefer_enhanced else CONTRAST_ABOVE_HU
    cand = (cal_sm >= lo) & (cal_sm <= hi) & body & ~excl
    if not cand.any():
        return None
    dist = ndi.distance_transform_edt(cand, sampling=(sj, si))
    dist[~region] = 0
    r_mm_min, r_mm_max = 4.0, 20.0
    ok = (dist >= r_mm_min) & (dist <= r_mm_max)
    if not ok.any():
        return None
    # Score: the largest inscribed disc, with a mild prior for the usual place (left-anterior).
    jj, ii = np.nonzero(ok)
    r = dist[jj, ii]
    dj = (jj - (j_front - 12.0 / sj)) * sj
    di = (ii - (i_mid + 15.0 / si)) * si
    score = np.minimum(r, 12.0) - 0.15 * np.hypot(dj, di)
    best = int(np.argmax(score))
    return float(jj[best]), float(ii[best]), float(r[best]), float(score[best])


def _block_mean(x: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return x.astype(np.float32)
    nj, ni = x.shape[0] // f, x.shape[1] // f
    return x[: nj * f, : ni * f].astype(np.float32).reshape(nj, f, ni, f).mean(axis=(1, 3))


def _expand(kji, f: int):
    """Indices on the f-times coarser in-plane grid -> every full-resolution voxel they cover."""
    kk, jj, ii = kji
    if f == 1:
        return kk, jj, ii
    dj, di = np.meshgrid(np.arange(f), np.arange(f), indexing="ij")
    return (np.repeat(kk, f * f), (jj[:, None] * f + dj.ravel()).ravel(), (ii[:, None] * f + di.ravel()).ravel())


def reference_voxels(vol: Volume, seg=None) -> dict:
    """Find the reference ROIs. Returns name -> {"kji": (k, j, i) index arrays, "why": str,
    "clip": float | None}; "kji" is None when the tissue was not found."""
    a = vol.array
    si0, sj0, _ = vol.spacing
    # Masks are built on ~1.5-2 mm pixels (block means: linear, so the HU-scale invariance holds)
    # and measured on every full-resolution voxel they cover.
    f = max(1, int(round(1.6 / min(si0, sj0))))
    si, sj = si0 * f, sj0 * f
    spacing_ji = (sj, si)
    px = min(sj, si)
    ks = _sample_slices(vol, seg)
    full_bodies: dict[int, np.ndarray] = {}
    spine = _Spine(vol, seg, ks, full_bodies)
    for k, row in list(spine.rows.items()):
        if row is not None:
            spine.rows[k] = tuple(x / f for x in row)
    bodies_masks = {k: _block_mean(b, f) > 0 for k, b in full_bodies.items()}
    vmin = float(a.min())
    # A clipped scanner minimum (e.g. -1024 or -1000 stored for all air below it) holds many voxels.
    clip = vmin if vmin > PADDING_BELOW_HU and np.mean(a[ks] == vmin) > 0.01 else None

    raw: dict[int, np.ndarray] = {}
    sm: dict[int, np.ndarray] = {}
    body: dict[int, np.ndarray] = {}
    skin_dist: dict[int, np.ndarray] = {}
    ellipse: dict[int, tuple[float, float, float, float]] = {}
    out = {n: {"kji": None, "why": "", "clip": None} for n in REFERENCE_NAMES}
    acc = {n: [] for n in REFERENCE_NAMES}
    for k in ks:
        s = _block_mean(a[k], f)
        raw[k] = s
        sm[k] = ndi.uniform_filter(s, size=3)
        b = _body_mask(sm[k], spacing_ji)
        body[k] = b
        if b.any():
            bj, bi = np.nonzero(b)
            # Body outline as an ellipse on the full-resolution grid (for the depth of each voxel).
            ellipse[int(k)] = (
                (bj.min() + bj.max() + 1) * f / 2.0 - 0.5,
                (bi.min() + bi.max() + 1) * f / 2.0 - 0.5,
                (bj.max() - bj.min() + 1) * f / 2.0,
                (bi.max() - bi.min() + 1) * f / 2.0,
            )
        skin_dist[k] = ndi.distance_transform_edt(b, sampling=spacing_ji)
        if spine.get(k) is None:
            found_spine = _spine_from_bone(sm[k], b, spacing_ji)
            if found_spine is not None:
                spine.rows[int(k)], bodies_masks[int(k)] = found_spine

    # --- air: anterior (the table is posterior), 10 mm from the body and from anything denser than
    # air (blankets, clothing folds, tubes), and from the image and reconstruction-circle edges.
    outside = [raw[k][~body[k] & (raw[k] > PADDING_BELOW_HU)] for k in ks if body[k].any()]
    outside = np.concatenate(outside) if outside else np.zeros(0)
    air_level = float(np.median(outside)) if outside.size else -1000.0
    for k in ks:
        s, b = raw[k], body[k]
        if not b.any():
            continue
        objects = (sm[k] > min(BODY_THRESHOLD_HU, air_level + 120.0)) | b
        far = ndi.distance_transform_edt(~objects, sampling=spacing_ji) > 10.0
        pad = s < PADDING_BELOW_HU
        if pad.any():
            far &= ndi.distance_transform_edt(~pad, sampling=spacing_ji) > 8.0
        edge = np.zeros_like(b)
        m = max(1, int(round(5.0 / px)))
        edge[m:-m, m:-m] = True
        bj = np.nonzero(b.any(axis=1))[0]
        anterior = np.zeros_like(b)
        anterior[: int((bj.min() + bj.max()) / 2), :] = True
        jj, ii = np.nonzero(far & edge & anterior)
        acc["air"].append((np.full(jj.size, k), jj, ii))

    # --- fat (pass 1, wide window): subcutaneous ring 2-30 mm under the skin
    def fat_pass(scale):
        pieces = []
        for k in ks:
            c = scale(sm[k])
            sel = (c >= FAT_WINDOW[0]) & (c <= FAT_WINDOW[1]) & (skin_dist[k] > 2.0) & (skin_dist[k] < 30.0)
            sel = ndi.binary_erosion(sel, structure=_disk(1.0))
            jj, ii = np.nonzero(sel)
            pieces.append((np.full(jj.size, k), jj, ii))
        return pieces

    def gather(pieces):
        if not pieces:
            return None
        kk = np.concatenate([p[0] for p in pieces]).astype(np.intp)
        jj = np.concatenate([p[1] for p in pieces]).astype(np.intp)
        ii = np.concatenate([p[2] for p in pieces]).astype(np.intp)
        if kk.size * f * f > MAX_VOXELS:
            step = int(np.ceil(kk.size * f * f / MAX_VOXELS))
            kk, jj, ii = kk[::step], jj[::step], ii[::step]
        return _expand((kk, jj, ii), f) if kk.size else None

    from . import physics

    expected = physics.reference_hu(120.0)
    air_kji = gather(acc["air"])
    air_clipped = False
    if air_kji is not None and clip is not None:
        air_clipped = float(np.mean(a[air_kji] <= clip)) > MAX_CLIPPED
    usable = air_kji is not None and air_kji[0].size >= MIN_VOXELS and not air_clipped
    air_hu = _robust_stats(a[air_kji], clip)[0] if usable else None
    fat_kji = gather(fat_pass(lambda x: x))
    fat_hu = _robust_stats(a[fat_kji])[0] if fat_kji is not None and fat_kji[0].size >= MIN_VOXELS else None

    # Preliminary map onto an approximately calibrated scale (only to place windows).
    if air_hu is not None and fat_hu is not None and fat_hu - air_hu > 300:
        g = (expected["fat"] - expected["air"]) / (fat_hu - air_hu)
        o = expected["air"] - g * air_hu
    elif fat_hu is not None:
        g, o = 1.0, expected["fat"] - fat_hu
    else:
        g, o = 1.0, 0.0
    g = float(np.clip(g, 0.7, 1.4))

    def to_cal(x):
        return g * x + o

    if fat_hu is not None:
        fat_kji = gather(fat_pass(to_cal))

    # --- aortic blood: the best round section per slice, enhanced first
    blood_hits = []
    # Without a segmentation the vertebral body (150-300 HU, round) is too easily taken for an
    # enhanced aorta: blood is only searched beside a segmented spine.
    has_seg = seg is not None and getattr(seg, "vertebrae", None) is not None
    for prefer_enhanced in (True, False) if has_seg else ():
        if blood_hits:
            break
        for k in ks:
            sp = spine.get(k)
            if sp is None:
                continue
            c = to_cal(sm[k])
            hit = _blood_in_slice(c, body[k], sp, bodies_masks.get(int(k)), spacing_ji, prefer_enhanced)
            if hit is not None and (not prefer_enhanced or hit[2] >= 5.0):
                blood_hits.append((int(k), *hit))
        if prefer_enhanced and len(blood_hits) < max(3, len(ks) // 3):
            blood_hits = []  # a few bright blobs are more likely bowel contrast or bone than an enhanced aorta
    # --- paraspinal muscle: both sides of the spinous process, behind the vertebral body
    for k in ks:
        sp = spine.get(k)
        if sp is None:
            continue
        i_mid, j_front, j_back, j_tip = sp
        c = to_cal(sm[k])
        region = np.zeros_like(body[k])
        ja = int(j_back + 8.0 / sj)
        jb = int(j_tip + 30.0 / sj)
        for side in (-1, 1):
            lo_i = i_mid + side * 8.0 / si
            hi_i = i_mid + side * 55.0 / si
            i0, i1 = int(min(lo_i, hi_i)), int(max(lo_i, hi_i))
            region[max(ja, 0) : jb + 1, max(i0, 0) : i1 + 1] = True
        bone = ndi.binary_dilation(c > BONE_ABOVE_HU, structure=_disk(3.0 / px))
        sel = (c >= MUSCLE_WINDOW[0]) & (c <= MUSCLE_WINDOW[1]) & region & body[k] & ~bone & (skin_dist[k] > 6.0)
        sel = ndi.binary_erosion(sel, structure=_disk(1.0))
        jj, ii = np.nonzero(sel)
        acc["muscle"].append((np.full(jj.size, k), jj, ii))

    # keep the tube sections that agree with their neighbours
    if blood_hits:
        hits = np.array(blood_hits)
        keep = []
        for n, (k, j, i, r, _s) in enumerate(hits):
            nb = hits[max(0, n - 3) : n + 4]
            dj = (j - np.median(nb[:, 1])) * sj
            di = (i - np.median(nb[:, 2])) * si
            if np.hypot(dj, di) <= 12.0:
                keep.append((int(k), j, i, r))
        for k, j, i, r in keep:
            rr = max(0.6 * r, 1.5 * px)
            h, w = raw[k].shape
            y, x = np.ogrid[:h, :w]
            disc = ((y - j) * sj) ** 2 + ((x - i) * si) ** 2 <= rr * rr
            jj, ii = np.nonzero(disc)
            acc["blood"].append((np.full(jj.size, k), jj, ii))

    found = {"air": air_kji, "fat": fat_kji, "muscle": gather(acc["muscle"]), "blood": gather(acc["blood"])}
    why_missing = {
        "air": "no air outside the body in the field of view (tight crop or body touching the edge)",
        "fat": "no subcutaneous fat found under the skin",
        "muscle": "no paraspinal muscle found behind the spine",
        "blood": "no round aortic section found anterior-left of the vertebral bodies"
        if has_seg
        else "not searched: the aorta is located from the spine segmentation, none was given",
    }
    if air_clipped:
        found["air"] = None
        why_missing["air"] = (
            f"outside air is clipped at {clip:.0f} HU by the scanner or converter: its true level is unknown"
        )
    for n in REFERENCE_NAMES:
        kji = found[n]
        if kji is None or kji[0].size < MIN_VOXELS:
            out[n] = {"kji": None, "why": why_missing[n], "clip": clip if (n == "air" and air_clipped) else None}
        else:
            out[n] = {"kji": kji, "why": "", "clip": clip if n == "air" else None}
    out["_prelim"] = (g, o)
    for n in REFERENCE_NAMES:
        kji = out[n]["kji"]
        out[n]["depth"] = None if kji is None else (np.zeros(kji[0].size) if n == "air" else depth(kji, ellipse))
    # Depth of the vertebral bodies (their footprints on the sampled slices), for the cupping term.
    spine_depths = []
    for k, m in bodies_masks.items():
        if k in ellipse and m.any():
            jj, ii = np.nonzero(m)
            spine_depths.append(depth((np.full(jj.size, k), jj * f + (f - 1) / 2.0, ii * f + (f - 1) / 2.0), ellipse))
    out["_spine_depth"] = float(np.mean(np.concatenate(spine_depths))) if spine_depths else None
    return out


def depth(kji, ellipse: dict) -> np.ndarray:
    """0 at the skin (and outside), 1 at the body's centre: 1 - r^2 over the slice's body ellipse,
    the profile of beam-hardening cupping."""
    kk, jj, ii = kji
    out = np.zeros(kk.size)
    for k in np.unique(kk):
        sel = kk == k
        if int(k) not in ellipse:
            continue
        jc, ic, aj, ai = ellipse[int(k)]
        r2 = ((jj[sel] - jc) / aj) ** 2 + ((ii[sel] - ic) / ai) ** 2
        out[sel] = np.clip(1.0 - r2, 0.0, 1.0)
    return out


def measure_references(vol: Volume, seg=None) -> dict:
    """name -> {"measured_hu", "sd_hu", "n_voxels", "mask_center_kji", "used", "why"} for air, fat,
    muscle and blood. ``used`` here means "found and measurable"; the calibration fit may still
    leave a reference out (contrast, outlier) and says why."""
    return measure_voxels(vol, reference_voxels(vol, seg))


def measure_voxels(vol: Volume, vox: dict) -> dict:
    """The statistics of :func:`measure_references` from :func:`reference_voxels`' output; each
    found reference also gets ``depth`` (its mean 1 - r^2 depth) and ``depth_bins``: (depth, HU,
    n) over three depth tertiles, which let the calibration see beam-hardening cupping."""
    res = {}
    for n in REFERENCE_NAMES:
        r = vox[n]
        if r["kji"] is None:
            res[n] = {
                "measured_hu": None,
                "sd_hu": None,
                "n_voxels": 0,
                "mask_center_kji": None,
                "used": False,
                "why": r["why"],
            }
            if r.get("clip") is not None:
                # Air found but clipped: its level is unknown, yet known to lie below the clip.
                res[n]["clipped_below_hu"] = float(r["clip"])
            continue
        vals = vol.array[r["kji"]]
        med, sd = _robust_stats(vals, r["clip"])
        why = "found"
        if r["clip"] is not None and np.mean(vals <= r["clip"]) > 0.25:
            why = f"found; air clipped at {r['clip']:.0f} HU, estimated from its unclipped part"
        res[n] = {
            "measured_hu": med,
            "sd_hu": sd,
            "n_voxels": int(vals.size),
            "mask_center_kji": [float(np.mean(x)) for x in r["kji"]],
            "used": True,
            "why": why,
        }
        d = r.get("depth")
        if d is not None:
            res[n]["depth"] = float(np.mean(d))
            bins = []
            if n != "air" and np.ptp(d) > 0.05:
                edges = np.quantile(d, [0.0, 1 / 3, 2 / 3, 1.0])
                for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                    sel = (d >= lo) & (d <= hi)
                    if sel.sum() >= MIN_VOXELS:
                        bins.append((float(np.mean(d[sel])), _robust_stats(vals[sel], r["clip"])[0], int(sel.sum())))
            res[n]["depth_bins"] = bins or [(float(np.mean(d)), med, int(vals.size))]
    return res
