"""Trabecular ROI per vertebral body, and body heights for fracture grading.

Per body: erode by ``cortex_margin_mm`` (anisotropic, through a distance map in mm), keep the
central ~55% of the body height along the local spine axis (away from both endplates) and an
elliptic core (70% of depth and width), drop the posterior-central region where the
basivertebral vein enters, then drop focal outliers (sclerotic islands, lytic lesions) beyond
median +- 3 robust SD of the median-filtered image. Bodies cut by the scan's first/last slice, or
much taller than their neighbours (a missed disc), get a QC flag and no ROI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from OsteoAIBaseLib import levels as lv
from OsteoAIBaseLib.volume import Volume
from scipy import ndimage as ndi

from .label_boxes import label_boxes

HEIGHT_KEEP = 0.55  # central fraction of the body height kept
VEIN_AP = 0.4  # posterior fraction of AP depth (the venous channel reaches ~1/3 into the body) ...
VEIN_LAT = 0.35  # ... times central fraction of width, left out for the basivertebral vein
OUTLIER_K = 3.0
CORTEX_K = 8.0  # a raw voxel this many robust SDs above the core's median is cortex, not marrow
MERGED_RATIO = 1.4
ENDPLATE_DELTA_HU = 250.0  # a layer this much denser than the ROI's median ...
ENDPLATE_FRAC = 0.3  # ... over this share of a 1 mm layer is an endplate
EDGE_MM = 5.0  # bodies closer than this to the first/last slice count as cut by the scan
ENDPLATE_MIN_HU = 80.0  # an endplate layer stands at least this far above the trabecular bone
JUMP_MM = 2.5  # a disc plus an endplate: an edge this far off the others' line is on the neighbour
CORE_FRAC = 0.6  # elliptic core: this fraction of the body's AP half-depth and half-width


@dataclass
class RoiInfo:
    label: int
    level: str
    volume_mm3: float
    center_kji: tuple
    box_kji: tuple  # ((k0, j0, i0), (k1, j1, i1)) inclusive bounding box of the ROI
    heights_mm: dict = field(default_factory=dict)  # anterior / middle / posterior body heights
    qc: list[str] = field(default_factory=list)


@dataclass
class RoiSet:
    labelmap: np.ndarray  # int16 VerSe ids, trabecular ROI voxels
    info: dict[int, RoiInfo] = field(default_factory=dict)


def _axis_at(seg, center_kji, spacing_kji) -> np.ndarray:
    """Unit craniocaudal axis (in mm, k/j/i order) from the canal centreline near the body."""
    cl = np.asarray((seg.info or {}).get("canal_centerline_kji") or [], float)
    if len(cl) >= 5:
        d = np.abs(cl[:, 0] - center_kji[0])
        near = cl[d <= np.sort(d)[min(len(d) - 1, 10)]]
        if len(near) >= 3:
            pts = near * spacing_kji
            c = pts - pts.mean(0)
            ax = np.linalg.svd(c, full_matrices=False)[2][0]
            if ax[0] < 0:
                ax = -ax
            if ax[0] > 0.5:  # never more than 60 degrees off the scanner axis
                return ax / np.linalg.norm(ax)
    return np.array([1.0, 0.0, 0.0])


def _canal_at(seg, center_kji, sl, spacing_kji) -> np.ndarray | None:
    """Canal centreline point nearest the body centre's slice, in the crop's mm coordinates."""
    cl = np.asarray((seg.info or {}).get("canal_centerline_kji") or [], float)
    if len(cl) == 0:
        return None
    q = cl[int(np.argmin(np.abs(cl[:, 0] - center_kji[0])))]
    if abs(q[0] - center_kji[0]) * spacing_kji[0] > 10.0:
        return None
    return (q - np.array([s.start for s in sl], float)) * spacing_kji


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AP unit vector (pointing anterior, i.e. -j) and lateral unit vector, both perpendicular to axis."""
    ant = np.array([0.0, -1.0, 0.0])
    ant = ant - (ant @ axis) * axis
    ant /= np.linalg.norm(ant)
    lat = np.cross(axis, ant)
    return ant, lat


def _crop(mask: np.ndarray, pad: int = 2):
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=False))


def body_heights(body: np.ndarray, spacing_kji: np.ndarray, axis: np.ndarray, offset=(0, 0, 0)) -> dict:
    """Anterior, middle and posterior heights (mm) of a body mask along ``axis``."""
    pts = (np.argwhere(body) + np.asarray(offset)) * spacing_kji
    if len(pts) < 10:
        return {"anterior": 0.0, "middle": 0.0, "posterior": 0.0}
    ant, lat = _frame(axis)
    c = pts - pts.mean(0)
    h, a, l_ = c @ axis, c @ ant, c @ lat
    a0, a1 = np.percentile(a, 2), np.percentile(a, 98)
    depth = a1 - a0
    out = {}
    for name, frac in (("anterior", 0.88), ("middle", 0.5), ("posterior", 0.12)):
        sel = (np.abs(a - (a0 + frac * depth)) <= max(2.0, 0.06 * depth)) & (np.abs(l_) <= 6.0)
        if sel.sum() < 3:
            out[name] = 0.0
            continue
        hh = h[sel]
        out[name] = round(float(np.percentile(hh, 99) - np.percentile(hh, 1)), 1)
    return out


def endplate_axis(vol: Volume, body: np.ndarray, sl, spacing_kji: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """The body's own height axis: ``axis`` tilted in the sagittal plane (up to 24 degrees) to
    where the mean density across the central body shows the sharpest endplates.

    The canal centreline bends with the kyphosis/lordosis but lags the body's own tilt by several
    degrees, and a column read at a wrong tilt leaves the body through its wall before it reaches
    the endplate.
    """
    pts = np.argwhere(body) * spacing_kji
    if len(pts) < 10:
        return axis
    ctr = pts.mean(0) + np.array([s.start for s in sl], float) * spacing_kji
    ant0, lat0 = _frame(axis)
    c = pts - pts.mean(0)
    h, a, l_ = c @ axis, c @ ant0, c @ lat0
    ext = np.percentile(h, 98) - np.percentile(h, 2)
    ra = 0.3 * (np.percentile(a, 98) - np.percentile(a, 2))
    rl = 0.3 * (np.percentile(l_, 98) - np.percentile(l_, 2))
    A, L = np.meshgrid(np.arange(-ra, ra + 1e-6, 1.5), np.arange(-rl, rl + 1e-6, 1.5), indexing="ij")
    A, L = A.ravel(), L.ravel()
    hs = np.arange(-(0.5 * ext + 5.0), 0.5 * ext + 5.0 + 1e-6, 0.5)
    best, best_ax = -np.inf, axis
    for deg in np.arange(-24.0, 24.1, 2.0):
        t = np.radians(deg)
        ax = np.cos(t) * axis + np.sin(t) * ant0
        ant, lat = _frame(ax)
        xyz = (
            ctr[None, None, :]
            + (A[:, None] * ant + L[:, None] * lat)[:, None, :]
            + hs[None, :, None] * ax[None, None, :]
        )
        vals = ndi.map_coordinates(vol.array, (xyz.reshape(-1, 3) / spacing_kji).T, order=1, mode="nearest")
        prof = vals.reshape(len(A), len(hs)).mean(0)
        mid = len(hs) // 2
        score = float(prof[mid:].max() + prof[:mid].max())
        if score > best:
            best, best_ax = score, ax
    return best_ax / np.linalg.norm(best_ax)


def endplate_heights(
    vol: Volume, body: np.ndarray, sl, spacing_kji: np.ndarray, axis: np.ndarray, hu_scale: float = 1.0
) -> dict:
    """Anterior, middle and posterior heights (mm) between the endplates, along ``axis``.

    A segmenter's body mask can run into the disc or stop short of an endplate where its cut
    plane is tilted, so the mask only says where to look: along each third's column the image
    is read past the mask's ends and the height runs between the outer edges (half maximum) of
    the first bright layer (cortical endplate) met on either side of the body's middle. A side
    without a clear endplate keeps the mask's extent there.
    """
    pts = np.argwhere(body) * spacing_kji
    if len(pts) < 10:
        return {"anterior": 0.0, "middle": 0.0, "posterior": 0.0}
    ant, lat = _frame(axis)
    ctr = pts.mean(0)
    c = pts - ctr
    h, a, l_ = c @ axis, c @ ant, c @ lat
    a0, a1 = np.percentile(a, 2), np.percentile(a, 98)
    depth = a1 - a0
    off = np.array([s.start for s in sl], float) * spacing_kji
    step = 0.5
    names = ("anterior", "middle", "posterior")
    tops, bots = {}, {}
    mid = ext = None
    for name, frac in (("middle", 0.5), ("anterior", 0.88), ("posterior", 0.12)):
        ab = a0 + frac * depth
        sel = (np.abs(a - ab) <= max(2.0, 0.06 * depth)) & (np.abs(l_) <= 6.0)
        if sel.sum() < 3:
            return {"anterior": 0.0, "middle": 0.0, "posterior": 0.0}
        lo_m, hi_m = np.percentile(h[sel], 1), np.percentile(h[sel], 99)
        if mid is None:
            # one centre and scale for all thirds, from the middle one: a tilted cut plane
            # shifts a side column's extent, and its own middle may then sit near its endplate
            mid, ext = 0.5 * (lo_m + hi_m), hi_m - lo_m
        reach = 0.5 * ext + 8.0
        hs = np.arange(mid - reach, mid + reach + 1e-6, step)
        da = np.arange(-1.5, 1.51, 0.75)
        dl = np.arange(-5.0, 5.01, 1.25)
        A, L, H = np.meshgrid(da, dl, hs, indexing="ij")
        xyz = (ctr + off)[None, :] + (ab + A.reshape(-1, 1)) * ant + L.reshape(-1, 1) * lat + H.reshape(-1, 1) * axis
        vals = ndi.map_coordinates(vol.array, (xyz / spacing_kji).T, order=1, mode="nearest")
        prof = ndi.gaussian_filter1d(np.percentile(vals.reshape(-1, len(hs)), 65, axis=0), 1.0)
        ic = len(hs) // 2
        core = prof[np.abs(hs - mid) <= 0.25 * ext]
        base = float(np.median(core)) if len(core) else float(prof[ic])
        # an endplate is never within the central 60% of the mask's extent
        top = _endplate_edge(prof[ic:], base, step, 0.3 * ext, ENDPLATE_MIN_HU * hu_scale)
        bot = _endplate_edge(prof[: ic + 1][::-1], base, step, 0.3 * ext, ENDPLATE_MIN_HU * hu_scale)
        tops[name] = (mid + top, hi_m) if top is not None else (None, hi_m)
        bots[name] = (mid - bot, lo_m) if bot is not None else (None, lo_m)
    tops, bots = _fill_missing(tops, names, +1.0), _fill_missing(bots, names, -1.0)
    _drop_jumps(tops, names, +1.0)
    _drop_jumps(bots, names, -1.0)
    return {n: round(float(tops[n] - bots[n]), 1) for n in names}


def _fill_missing(edge: dict, names, sign: float) -> dict:
    """Edge positions per third; one with no clear endplate is taken from the others (the
    endplate is near planar; the innermost, as an outer one may have been read past the disc),
    and the mask's own extent only when no third shows one."""
    found = {n: e for n, (e, _m) in edge.items() if e is not None}
    if not found:
        return {n: m for n, (_e, m) in edge.items()}
    out = {}
    for n in names:
        if n in found:
            out[n] = found[n]
        elif n != names[1] and names[1] in found:
            out[n] = found[names[1]]
        else:
            out[n] = min(found.values()) if sign > 0 else max(found.values())
    return out


def _drop_jumps(edge: dict, names, sign: float) -> None:
    """An endplate is (piecewise) planar across the thirds: an edge well beyond the line through
    the other two was read on the neighbouring vertebra, past the disc (where this column missed
    its own endplate); it is put back on that line."""
    a, m, p = (edge[n] for n in names)
    pred = {names[0]: 2 * m - p, names[1]: 0.5 * (a + p), names[2]: 2 * m - a}
    # a jumped A or P edge lifts the line's A and P excess alike: blame the one farther from M
    worst = names[1]
    if sign * (m - pred[names[1]]) <= JUMP_MM:
        worst = names[0] if sign * (a - m) >= sign * (p - m) else names[2]
    if sign * (edge[worst] - pred[worst]) > JUMP_MM:
        others = [edge[n] for n in names if n != worst]
        # the line through the other two can itself be off: never beyond the farther of them
        lim = max(others) if sign > 0 else min(others)
        edge[worst] = min(pred[worst], lim) if sign > 0 else max(pred[worst], lim)


def _endplate_edge(
    prof: np.ndarray, base: float, step: float, start: float, min_hu: float = ENDPLATE_MIN_HU
) -> float | None:
    """Distance (mm) from prof[0] (the body's middle) to the outer half-maximum edge of the first
    endplate at least ``start`` mm outward; None when no layer stands out from the trabecular bone."""
    i0 = int(start / step)
    if len(prof) < i0 + 5:
        return None
    seg = prof[i0:]
    peaks = np.nonzero((seg[1:-1] >= seg[:-2]) & (seg[1:-1] >= seg[2:]) & (seg[1:-1] - base >= min_hu))[0]
    if len(peaks) == 0:
        return None
    i = i0 + 1 + int(peaks[0])
    pk = float(prof[i])
    rest = prof[i:]
    floor = float(rest[: max(2, int(6.0 / step))].min())
    half = 0.5 * (pk + floor)
    below = np.nonzero(rest < half)[0]
    if len(below) == 0 or pk - floor < 0.5 * min_hu:
        return None
    j = i + int(below[0])
    # sub-sample position of the half-maximum crossing
    f = (prof[j - 1] - half) / max(prof[j - 1] - prof[j], 1e-6)
    return (j - 1 + float(f)) * step


def _pad(sl, shape, pad: int):
    return tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(sl, shape, strict=True))


def scan_hu_map(seg) -> tuple[float, float]:
    """(scale, offset) with this scan's HU = scale * nominal HU + offset, as the segmenter read them from
    the scan's own tissue peaks (``seg.info["hu_reference"]``); (1, 0) from a segmenter that gives none."""
    ref = (getattr(seg, "info", None) or {}).get("hu_reference") or {}
    return float(ref.get("scale") or 1.0), float(ref.get("offset_hu") or 0.0)


def height_resolution_mm(seg, spacing) -> float:
    """The smallest height difference a body split can measure: the slice thickness (each endplate is read
    to about half a slice) plus the step of the grid the segmenter placed its disc planes on
    (``seg.info["disc_step_mm"]``, 0 when it does not say)."""
    info = getattr(seg, "info", None) or {}
    return float(max(spacing)) + float(info.get("disc_step_mm", 0.0))


def _looks_merged(label: int, mids: dict, order: list[int], resolution_mm: float = 0.0) -> bool:
    """A body much taller than its neighbours has probably swallowed a disc (or is misplaced).

    Body height grows caudally (T1 ~14 mm, L3 ~28 mm), so compare with the nearest levels only.
    Each height is measured to about ``resolution_mm`` (the slice thickness plus the step of the
    disc-plane grid): only an excess beyond that counts. Two bodies merged are twice as tall.
    """
    if mids.get(label, 0) <= 0 or label not in order:
        return False
    pos = order.index(label)
    near = sorted(
        (abs(order.index(lab) - pos), h) for lab, h in mids.items() if lab != label and h > 0 and lab in order
    )
    others = [h for _d, h in near[:4]]
    if len(others) < 2:
        return False
    return mids[label] > MERGED_RATIO * float(np.median(others)) + resolution_mm


def _core(
    vol: Volume, body_c: np.ndarray, spacing_kji, axis, margin_mm: float, canal_mm: np.ndarray | None = None
) -> np.ndarray:
    """Eroded, height-limited, vein-free part of one (cropped) body mask.

    ``canal_mm`` (crop coordinates, mm) is the spinal canal's centre at this level: the body is
    centred on it left-right, so a structure stuck to one side of the mask (an enhanced aorta)
    shows as an asymmetric extent; the core is then centred on the canal with the narrower side's
    half-width, and no deeper than the body is wide.
    """
    b = ndi.binary_fill_holes(body_c)
    dist = ndi.distance_transform_edt(b, sampling=spacing_kji)
    core = dist > margin_mm
    if not core.any():
        return core
    pts = np.argwhere(b) * spacing_kji
    ctr = pts.mean(0)
    ant, lat = _frame(axis)
    grid = np.indices(b.shape).reshape(3, -1).T * spacing_kji - ctr
    h = (grid @ axis).reshape(b.shape)
    a = (grid @ ant).reshape(b.shape)
    lt = (grid @ lat).reshape(b.shape)
    hb, ab, lb = h[b], a[b], lt[b]
    h0, h1 = np.percentile(hb, 2), np.percentile(hb, 98)
    mid = 0.5 * (h0 + h1)
    half = 0.5 * HEIGHT_KEEP * (h1 - h0)
    core &= np.abs(h - mid) <= half
    a0, a1 = np.percentile(ab, 2), np.percentile(ab, 98)
    l0, l1 = np.percentile(lb, 2), np.percentile(lb, 98)
    lc, hw = 0.5 * (l0 + l1), 0.5 * (l1 - l0)
    if canal_mm is not None:
        c_l = float((np.asarray(canal_mm) - ctr) @ lat)
        side = min(c_l - l0, l1 - c_l)
        if side >= 0.3 * (l1 - l0):  # the canal lies over the body: trust it as the midline
            lc, hw = c_l, side
            a1 = min(a1, a0 + 2.0 * hw)
    vein = (a <= a0 + VEIN_AP * (a1 - a0)) & (np.abs(lt - lc) <= VEIN_LAT * hw)
    core &= ~vein
    # an elliptic core keeps the ROI clear of the body outline even where the mask overshoots
    ra, rl = 0.5 * CORE_FRAC * (a1 - a0), CORE_FRAC * hw
    core &= ((a - 0.5 * (a0 + a1)) / max(ra, 1e-3)) ** 2 + ((lt - lc) / max(rl, 1e-3)) ** 2 <= 1
    return core


def trim_endplates(vol: Volume, core: np.ndarray, sl, spacing_kji, axis, hu_scale: float = 1.0) -> np.ndarray | None:
    """Remove bright layers (endplates) from the ROI's height band; None when one crosses its middle.

    In a correctly split body the central band holds trabecular bone only. An endplate near an
    end of the band (a slightly misplaced disc plane) is trimmed away with what lies beyond it; one
    in the middle means the body was split half a vertebra off (a missed or spurious disc).
    """
    if core.sum() < 50:
        return core
    idx = np.argwhere(core)
    vals = vol.array[sl][core].astype(np.float32)
    thr = float(np.median(vals)) + ENDPLATE_DELTA_HU * hu_scale
    h = (idx * spacing_kji) @ axis
    bins = np.floor((h - h.min()) / 1.0).astype(int)  # 1 mm layers along the spine axis
    n = np.bincount(bins)
    bright = np.bincount(bins, weights=(vals > thr).astype(float), minlength=len(n))
    frac = np.where(n >= 10, bright / np.maximum(n, 1), 0.0)
    hot = np.nonzero(frac > ENDPLATE_FRAC)[0]
    if len(hot) == 0:
        return core
    nb = len(n)
    lo_end, hi_end = 0.3 * nb, 0.7 * nb
    if ((hot >= lo_end) & (hot <= hi_end)).any():
        return None
    keep_lo = hot[hot < lo_end].max() + 2 if (hot < lo_end).any() else 0
    keep_hi = hot[hot > hi_end].min() - 2 if (hot > hi_end).any() else nb - 1
    out = np.zeros_like(core)
    sel = (bins >= keep_lo) & (bins <= keep_hi)
    out[tuple(idx[sel].T)] = True
    return out


def _drop_outliers(vol: Volume, core: np.ndarray, sl) -> np.ndarray:
    if core.sum() < 20:
        return core
    # every test below reads a core voxel and its neighbours only: done on the core's box grown by one
    # voxel (inside the body's box ``sl``), the median filter gives the same values there at a fraction
    # of the body box's cost
    inner = _pad(ndi.find_objects(core.astype(np.uint8))[0], core.shape, 1)
    out = np.zeros_like(core)
    out[inner] = _drop_outliers_in(vol.array[sl][inner], core[inner])
    return out


def _drop_outliers_in(ct: np.ndarray, core: np.ndarray) -> np.ndarray:
    img = ndi.median_filter(ct, size=3).astype(np.float32)
    v = img[core]
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    if mad <= 0:
        return core
    core = core & (np.abs(img - med) <= OUTLIER_K * mad)
    # the median filter hides a thin cortex or endplate the core grazes (a body mask that
    # overshoots its wall), yet one such voxel weighs like tens of trabecular ones: drop voxels far
    # brighter than the core's own spread, with their partial-volume neighbours
    raw = np.asarray(ct, np.float32)
    rv = raw[core]
    if len(rv) < 20:
        return core
    rmed = float(np.median(rv))
    rmad = 1.4826 * float(np.median(np.abs(rv - rmed)))
    hot = raw > rmed + CORTEX_K * max(rmad, 1.0)
    if hot.any():
        core = core & ~ndi.binary_dilation(hot, iterations=1)
    return core


def place_rois(vol: Volume, seg, min_volume_mm3: float = 500.0, cortex_margin_mm: float = 2.0) -> RoiSet:
    """Trabecular ROI for every labelled body of ``seg`` on the canonical grid of ``vol``."""
    spacing_kji = np.asarray(vol.spacing[::-1], float)
    out = np.zeros(vol.shape, np.int16)
    info: dict[int, RoiInfo] = {}
    partial = set((seg.info or {}).get("partial_levels", []))
    # HU contrasts (an endplate over the marrow) are read on the scan's own scale, so a scanner that
    # maps tissue to HU' = a * HU + b places the same ROIs (segmenters without a reference: 1)
    hu_scale = scan_hu_map(seg)[0]
    vox = float(np.prod(spacing_kji))
    objs = label_boxes(seg.bodies)  # one pass for every level instead of one per level
    vert = seg.vertebrae
    edge_k = set(np.unique(vert[0]).tolist()) | set(np.unique(vert[-1]).tolist())
    heights_all = {}
    for label in seg.levels:
        if label > len(objs) or objs[label - 1] is None:
            continue
        sl = _pad(objs[label - 1], vol.shape, 2)
        body_c = seg.bodies[sl] == label
        center = np.argwhere(body_c).mean(0) + [s.start for s in sl]
        heights_all[label] = (sl, body_c, center, _axis_at(seg, center, spacing_kji))
    edge_vox = max(1, int(np.ceil(EDGE_MM / spacing_kji[0])))
    cut = {}
    for label, (sl, body_c, _c, _ax) in heights_all.items():
        ks = np.nonzero(body_c.any(axis=(1, 2)))[0] + sl[0].start
        # a body ending within a few mm of the first/last slice may continue beyond it
        cut[label] = bool(label in edge_k or ks.min() < edge_vox or ks.max() > vol.shape[0] - 1 - edge_vox)
    mids = {
        lab: body_heights(b, spacing_kji, ax)["middle"] for lab, (_s, b, _c, ax) in heights_all.items() if not cut[lab]
    }
    resolution = height_resolution_mm(seg, spacing_kji)
    for label, (sl, body_c, center, axis) in heights_all.items():
        qc: list[str] = []
        heights = endplate_heights(
            vol, body_c, sl, spacing_kji, endplate_axis(vol, body_c, sl, spacing_kji, axis), hu_scale
        )
        lo_edge = [s.start == 0 for s in sl]
        hi_edge = [s.stop == n for s, n in zip(sl, vol.shape, strict=True)]
        cut_k = cut[label]
        touches = cut_k or any(lo_edge[1:]) or any(hi_edge[1:])
        if touches or label in partial:
            qc.append(f"body_cut: the {lv.name(label)} body is partly out of the field of view")
        merged = _looks_merged(label, mids, seg.levels, resolution)
        if merged:
            qc.append(
                f"seg_suspect: the {lv.name(label)} body is much taller than its neighbours "
                "(two vertebrae merged?); no ROI placed"
            )
        if cut_k or merged:
            # the central height band is unknown (endplate out of view or a missed disc): no ROI
            core = np.zeros(body_c.shape, bool)
        else:
            core = _core(vol, body_c, spacing_kji, axis, cortex_margin_mm, _canal_at(seg, center, sl, spacing_kji))
            trimmed = trim_endplates(vol, core, sl, spacing_kji, axis, hu_scale)
            if trimmed is None:
                qc.append(
                    f"seg_suspect: an endplate crosses the middle of the {lv.name(label)} body "
                    "(vertebra split off the discs?); no ROI placed"
                )
                core = np.zeros_like(core)
            else:
                core = trimmed
            core = _drop_outliers(vol, core, sl)
        n = int(core.sum())
        volume = n * vox
        if volume < min_volume_mm3:
            qc.append(f"roi_small: trabecular ROI {volume:.0f} mm3 < {min_volume_mm3:.0f} mm3")
        if n:
            sub = out[sl]
            sub[core] = label
            idx = np.argwhere(core) + [s.start for s in sl]
            c = tuple(round(float(x), 1) for x in idx.mean(0))
            box = (tuple(int(x) for x in idx.min(0)), tuple(int(x) for x in idx.max(0)))
        else:
            c, box = tuple(round(float(x), 1) for x in center), ((0, 0, 0), (0, 0, 0))
        info[int(label)] = RoiInfo(int(label), lv.name(label), round(volume, 1), c, box, heights, qc)
    return RoiSet(out, info)


def roi_from_box(vol: Volume, seg, label: int, box_kji, cortex_margin_mm: float = 2.0) -> np.ndarray:
    """Boolean ROI = user box (inclusive corners, k/j/i) intersected with the eroded body ``label``."""
    body = seg.bodies == int(label)
    out = np.zeros(vol.shape, bool)
    if not body.any():
        return out
    (k0, j0, i0), (k1, j1, i1) = box_kji
    lo = np.maximum(np.minimum([k0, j0, i0], [k1, j1, i1]), 0).astype(int)
    hi = np.minimum(np.maximum([k0, j0, i0], [k1, j1, i1]) + 1, vol.shape).astype(int)
    if np.any(hi <= lo):
        return out
    box = np.zeros(vol.shape, bool)
    box[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return trabecular_core(body, vol.spacing[::-1], cortex_margin_mm) & box


def trabecular_core(mask: np.ndarray, spacing_kji, cortex_margin_mm: float = 2.0) -> np.ndarray:
    """The voxels of a bone mask deeper inside it than the cortical margin (mm): a user's ROI box
    measures marrow, never the cortex or an endplate it happens to reach."""
    out = np.zeros(mask.shape, bool)
    if not mask.any():
        return out
    sl = _crop(mask)
    b = ndi.binary_fill_holes(mask[sl])
    out[sl] = ndi.distance_transform_edt(b, sampling=np.asarray(spacing_kji, float)) > cortex_margin_mm
    return out
