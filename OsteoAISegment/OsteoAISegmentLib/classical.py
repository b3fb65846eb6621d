"""Classical (no training data) vertebra segmentation and labelling.

bone threshold on a ~2 mm grid -> spinal canal tracked slice by slice -> body centreline just
anterior to it -> discs at the regularly spaced dark bands of the density profile along the
body centreline (tilted planes) -> whole vertebrae = bone in an envelope around the canal, split
by the disc planes -> body = the part anterior to the canal's anterior wall -> labels from the
ribs (labelling.py) -> masks back on the input grid, refined against the full-resolution bone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from OsteoAIBaseLib import levels as lv
from OsteoAIBaseLib.errors import CancelledError, InputError
from OsteoAIBaseLib.volume import Volume
from scipy import ndimage as ndi

from . import canal, discs, hu_reference, labelling, workgrid
from .segmentation import SpineSegmentation

VERSION = "0.1.0"
WS = 2.0  # work grid spacing, mm
FS = 1.0  # disc search grid spacing, mm
THIN_DISC_PITCH_MM = 24.0  # vertebral pitch below which the discs are thin (thoracic)
FRONT_MM = 2.0  # the body mask reaches this far in front of the anterior wall read on the centreline
FINE_MAX_SLICE_MM = 3.0  # thinner slices resolve thoracic discs (~3 mm) that the 2 mm grid blurs away
# the outermost slices of a scan with slices thicker than 3 mm, where the body depth read is not
# trusted (discs.find_discs): a slice that thick at the scan's edge holds a partial body
EDGE_SLICES = 2


def _step(progress, cancel, frac, msg):
    if cancel is not None and cancel():
        raise CancelledError("segmentation cancelled")
    if progress is not None:
        progress(frac, msg)


def segment_classical(
    vol: Volume, progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None
) -> SpineSegmentation:
    arr = vol.array
    if arr.ndim != 3 or min(arr.shape) < 2:
        raise InputError("no spine found: the volume is not 3D")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        arr = np.nan_to_num(arr, nan=-1000.0, posinf=-1000.0, neginf=-1000.0)
    _step(progress, cancel, 0.0, "resampling")
    work, grid = workgrid.make_work(arr, vol.spacing, WS)
    # every threshold below is in nominal HU: the scan is mapped onto it through its own fat and
    # muscle peaks, so a scanner's HU scale/offset (or kVp) does not move them against the anatomy
    ref = hu_reference.estimate_work(work)
    work = ref.to_nominal(work).astype(np.float32)
    if float(work.max()) - float(work.min()) < 200:
        raise InputError("no spine found: the volume has no bone contrast")

    _step(progress, cancel, 0.1, "finding the spinal canal")
    rows = canal.canal_candidates(work, WS)
    if len(rows):
        filled = canal._fill_holes_2d(ndi.binary_closing(work > 150, structure=canal._PLANE, iterations=2))
        rows = rows[canal._anterior_bone_score(rows, filled, WS) > 0.3]
    chain = rows[canal.track_canal(rows, WS)] if len(rows) else rows
    if len(chain) < max(3, int(12 / WS)) or (chain[:, 0].max() - chain[:, 0].min()) * WS < 15:
        raise InputError("no spine found: no spinal canal enclosed by bone was detected")
    canal_ji, k0, k1 = canal.centerline(chain, work.shape[0], 4.0, WS)
    # the canal is often lost in the last centimetres before the scan's edge: carry it on
    ext = int(24 / WS)
    lo, hi = (k0 if k0 > ext else 0), (k1 if k1 < work.shape[0] - 1 - ext else work.shape[0] - 1)
    canal_ji = np.pad(canal_ji, ((k0 - lo, hi - k1), (0, 0)), mode="edge")
    k0, k1 = lo, hi

    _step(progress, cancel, 0.3, "finding the discs")
    bc = discs.body_centerline(work, canal_ji, k0, WS)
    if bc["valid"].sum() < 3:
        raise InputError("no spine found: no vertebral bodies anterior to the canal")
    ks = np.arange(k0, k1 + 1).astype(float)
    pts = np.stack([ks, bc["body_j"], bc["body_i"]], 1)
    planes, pitch, polarity = _disc_planes(arr, vol.spacing, work, pts, bc, ref)

    _step(progress, cancel, 0.45, "splitting vertebrae")
    lab_w, body_w, seg_info = _split(work, canal_ji, k0, k1, bc, planes)
    n_seg = len(seg_info)
    if n_seg == 0:
        raise InputError("no spine found: no vertebra could be separated")

    _step(progress, cancel, 0.6, "labelling from the ribs")
    lab_res = labelling.label_vertebrae(work, lab_w, seg_info, canal_ji, k0, WS, body_w, planes)
    mapping = lab_res["mapping"]  # segment index -> VerSe id (0 = drop)

    _step(progress, cancel, 0.75, "refining masks at full resolution")
    vert_full, vert_box = _to_full(lab_w, grid, arr, mapping, ref)
    body_full, body_box = _to_full(body_w, grid, arr, mapping, ref)
    # both are zero outside their boxes: merged inside the boxes' hull only (a full-volume pass each otherwise)
    hull = _hull(vert_box, body_box)
    if hull is not None:
        vert, body = vert_full[hull], body_full[hull]
        body[vert == 0] = 0
        vert[(body > 0) & (vert == 0)] = body[(body > 0) & (vert == 0)]

    # the ids present, from their boxes: one pass, where np.unique sorts the whole volume (~0.3-1.5 s)
    boxes = ndi.find_objects(vert_full[hull]) if hull is not None else []
    present = [lab for lab, box in enumerate(boxes, start=1) if box is not None]
    qc = list(lab_res["qc"]) + ref.qc()
    partial = _partial_levels(vert_full)
    for lab in partial:
        qc.append(f"fov_cut: {lv.name(lab)} is cut by the edge of the scan")
    canal_full = grid.work_to_full_kji(np.column_stack([ks, canal_ji]))
    carina_w = lab_res["carina_kji"]
    info = {
        "rib_pairs": lab_res["rib_pairs"],
        "ribs": lab_res["ribs"],
        "partial_levels": partial,
        "canal_centerline_kji": canal_full.round(2).tolist(),
        "discs_kji": [grid.work_to_full_kji(p).round(2).tolist() for p, _n in planes],
        "label_anchor": lab_res["anchor"],
        "carina_kji": None if carina_w is None else grid.work_to_full_kji(carina_w).round(2).tolist(),
        "naming": lab_res["naming"],
        "pitch_mm": float(np.median(pitch) * WS),
        "disc_polarity": polarity,
        # the step of the grid the disc planes were placed on: with the slice thickness, the
        # smallest height difference the split can measure (qc's fracture grade)
        "disc_step_mm": FS if _thin_slices(vol.spacing) else WS,
        "work_spacing_mm": WS,
        "hu_reference": ref.as_dict(),
    }
    _step(progress, cancel, 1.0, "segmentation done")
    return SpineSegmentation(
        vertebrae=vert_full,  # int16 from _to_full: a copy of each would cost ~0.3 s at 512x512x300
        bodies=body_full,
        levels=_cranial_first(present),
        qc=qc,
        info=info,
        segmenter=f"classical@{VERSION}",
    )


def _thin_slices(spacing) -> bool:
    """Slices thin enough to resolve a thoracic disc: its planes are placed on the 1 mm grid."""
    return max(spacing) <= FINE_MAX_SLICE_MM


def _disc_planes(arr, spacing, work, pts, bc, ref):
    """Disc planes (work-grid point, normal) caudal -> cranial, the local pitch (work voxels) and
    how the discs read ("dark" or "bright", discs.find_discs)."""
    if _thin_slices(spacing):
        return _fine_discs(arr, spacing, work, pts, bc, ref)
    disc_idx, _score, pitch, polarity = discs.find_discs(
        work,
        pts,
        WS,
        8.0,
        bc["depth_mm"],
        bc["ant_wall_j"],
        bc["post_wall_j"],
        thick_slices=True,
        edge_mm=EDGE_SLICES * max(spacing),
    )
    # a slice this thick averages over more than a disc's height, so the disc's tilt cannot be read
    # from it (searching for the darkest tilt wedges both bodies, or, for a disc read bright, tilts
    # the plane out of the band): the disc lies square to the spine's axis, as readers place it
    tang, _u, _v = discs._frames(pts)
    return [(pts[d], tang[d]) for d in disc_idx], pitch, polarity


def _fine_discs(arr: np.ndarray, spacing, work: np.ndarray, pts: np.ndarray, bc: dict, ref: hu_reference.HuReference):
    """Disc planes (work-grid coordinates) placed from a 1 mm grid around the body centreline.

    On the 2 mm grid a 3 mm upper-thoracic disc between two bright endplates averages to about
    the density of the body, so the dark middle of the small bodies read as the discs instead.
    """
    r = WS / FS
    sk = np.asarray(spacing[::-1], float)  # full-grid spacing, k/j/i
    lo_mm = np.array([pts[:, 0].min() * WS - 4, np.min(bc["ant_wall_j"]) * WS - 12, pts[:, 2].min() * WS - 32])
    hi_mm = np.array([pts[:, 0].max() * WS + 4, np.max(bc["post_wall_j"]) * WS + 8, pts[:, 2].max() * WS + 32])
    lo = np.maximum(np.floor(lo_mm / sk).astype(int), 0)
    hi = np.minimum(np.ceil(hi_mm / sk).astype(int) + 1, arr.shape)
    fine, _g = workgrid.make_work(arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], spacing, FS)
    fine = ref.to_nominal(fine).astype(np.float32)
    shift = lo * sk / FS  # crop origin on the fine grid
    # the centreline and its body walls, resampled to one point per fine slice
    kf = np.arange(pts[0, 0] * r, pts[-1, 0] * r + 1e-6, 1.0)
    kw = kf / r
    pf = np.stack([kf, np.interp(kw, pts[:, 0], pts[:, 1]) * r, np.interp(kw, pts[:, 0], pts[:, 2]) * r], 1) - shift
    ant = np.interp(kw, pts[:, 0], bc["ant_wall_j"]) * r - shift[1]
    post = np.interp(kw, pts[:, 0], bc["post_wall_j"]) * r - shift[1]
    depth = np.interp(kw, pts[:, 0], bc["depth_mm"])
    idx, _score, pitch, polarity = discs.find_discs(fine, pf, FS, 8.0, depth, ant, post)
    tw, _u, _v = discs._frames(pts)
    tf, _u, _v = discs._frames(pf)
    rad = float(np.median(bc["depth_mm"])) * 0.35 / WS
    planes = []
    for d in idx:
        if pitch[d] * FS <= THIN_DISC_PITCH_MM:
            # thin thoracic disc: tilt and position both read on the fine grid
            p, n = discs.refine_plane(fine, pf[d], tf[d], rad * r, FS)
            planes.append(((p + shift) / r, n))
            continue
        # a thick lumbar disc is about as dark at any tilt on the fine grid: the tilt is read on the
        # work grid, whose smoother profile holds the plane to the disc's own, the position on the
        # fine grid
        pw = (pf[d] + shift) / r
        q = int(np.clip(np.searchsorted(pts[:, 0], pw[0]), 0, len(pts) - 1))
        _p, n = discs.refine_plane(work, pw, tw[q], rad, WS)
        shifts = np.arange(-3.0, 3.01, 0.5) / FS
        cand = pf[d][None, :] + shifts[:, None] * n[None, :]
        best = cand[int(np.argmin(discs.disk_means(fine, cand, np.repeat(n[None, :], len(cand), 0), rad * r)))]
        planes.append(((best + shift) / r, n))
    return planes, pitch / r, polarity


def _cranial_first(ids: list[int]) -> list[int]:
    return sorted(ids, key=lambda x: lv.ORDER.index(x) if x in lv.ORDER else 99)


def _split(work, canal_ji, k0, k1, bc, planes):
    """Work-grid labelmaps (segment index from 1, caudal -> cranial) of whole vertebrae and bodies.

    Runs on a box around the spine only (the morphology is the slow part).
    """
    nk, nj, ni = work.shape
    j_lo = max(0, int(np.floor(min(bc["ant_wall_j"].min(), canal_ji[:, 0].min()) - 8 / WS)))
    j_hi = min(nj, int(np.ceil(canal_ji[:, 0].max() + 54 / WS)) + 1)
    i_lo = max(0, int(np.floor(canal_ji[:, 1].min() - 46 / WS)))
    i_hi = min(ni, int(np.ceil(canal_ji[:, 1].max() + 46 / WS)) + 1)
    off = np.array([0.0, j_lo, i_lo])
    bc_c = dict(bc)
    bc_c["post_wall_j"] = bc["post_wall_j"] - j_lo
    bc_c["ant_wall_j"] = bc["ant_wall_j"] - j_lo
    bc_c["body_i"] = bc["body_i"] - i_lo
    seg_c, body_c, info = _split_box(
        work[:, j_lo:j_hi, i_lo:i_hi], canal_ji - off[1:], k0, k1, bc_c, [(p - off, n) for p, n in planes]
    )
    seg = np.zeros(work.shape, np.int16)
    body = np.zeros(work.shape, np.int16)
    seg[:, j_lo:j_hi, i_lo:i_hi] = seg_c
    body[:, j_lo:j_hi, i_lo:i_hi] = body_c
    for s in info:
        s["center"] = s["center"] + off
    return seg, body, info


def _split_box(work, canal_ji, k0, k1, bc, planes):
    nk, nj, ni = work.shape
    kk = np.arange(nk)
    # per-slice envelope geometry (extrapolated flat beyond the canal range)
    r = np.clip(kk - k0, 0, k1 - k0)
    cj, ci = canal_ji[r, 0], canal_ji[r, 1]
    pw, aw, bi = bc["post_wall_j"][r], bc["ant_wall_j"][r], bc["body_i"][r]
    depth = np.maximum(pw - aw, 8 / WS)
    inside_k = (kk >= k0 - int(20 / WS)) & (kk <= k1 + int(20 / WS))
    J = np.arange(nj)[None, :, None]
    Ii = np.arange(ni)[None, None, :]
    lat = np.abs(Ii - ci[:, None, None]) * WS
    env = (J >= (aw - 4 / WS)[:, None, None]) & (J <= (cj + 50 / WS)[:, None, None])
    env = env & (lat <= 42) & inside_k[:, None, None]
    ap_zone = (J <= pw[:, None, None] + 0.5) & (J >= (aw - FRONT_MM / WS)[:, None, None])
    # lumbar bodies are ~1.5x as wide as deep; the ring must be closed before it is trimmed
    body_zone = ap_zone & (np.abs(Ii - bi[:, None, None]) <= (0.95 * depth)[:, None, None])
    ring_zone = (J <= pw[:, None, None] + 3 / WS) & (J >= (aw - 4 / WS)[:, None, None])
    ring_zone = ring_zone & (np.abs(Ii - bi[:, None, None]) <= (1.15 * depth)[:, None, None])
    raw = ndi.gaussian_filter(work, 0.6) > 120
    bony = canal._fill_holes_2d(ndi.binary_closing(raw, structure=canal._PLANE, iterations=1)) & env
    # osteoporotic or noisy bodies: only the cortical ring clears the threshold, and its posterior
    # wall has a gap where the basivertebral vein leaves, so fill spans rather than holes: between
    # the leftmost and rightmost ring voxel of each row, behind the anterior wall, up to the canal
    ring = ndi.binary_closing(raw & ring_zone, structure=canal._PLANE, iterations=1)
    row = np.maximum.accumulate(ring, axis=2) & np.maximum.accumulate(ring[:, :, ::-1], axis=2)[:, :, ::-1]
    behind = np.maximum.accumulate(ring, axis=1)
    bony |= row & behind & body_zone & env
    bony &= ~((work < 150) & _canal_tube(work.shape, canal_ji, k0, k1))
    lab, n = ndi.label(bony)
    if n == 0:
        return np.zeros(work.shape, np.int16), np.zeros(work.shape, np.int16), []
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= max(50, 0.05 * sizes.max())
    bony = keep[lab]
    # segment index by the disc planes
    seg = np.zeros(work.shape, np.int16)
    pos = np.nonzero(bony)
    P = np.stack(pos, 1).astype(np.float32)
    idx = np.ones(len(P), np.int16)
    for p, nrm in planes:
        idx += ((P - p) @ nrm > 0).astype(np.int16)
    seg[pos] = idx
    # body: anterior to the canal's anterior wall, within a body-wide band
    body = np.where(body_zone, seg, 0).astype(np.int16)
    # drop disc voxels (thin slab around each plane) from the bodies
    if planes:
        for p, nrm in planes:
            d = np.abs((P - p) @ nrm) * WS
            near = d < 1.5
            body[tuple(c[near] for c in pos)] = 0
    body = _largest_per_label(body)
    info = []
    for s in range(1, len(planes) + 2):
        m = body == s
        if m.sum() * WS**3 < 1500:  # < 1.5 cm3: a sliver above/below the last disc
            seg[seg == s] = 0
            body[m] = 0
            continue
        c = np.argwhere(m).mean(0)
        info.append({"index": s, "center": c, "body_voxels": int(m.sum())})
    return seg, body, info


def _canal_tube(shape, canal_ji, k0, k1) -> np.ndarray:
    nk, nj, ni = shape
    out = np.zeros(shape, bool)
    rr = int(6 / WS)
    for r in range(len(canal_ji)):
        k = k0 + r
        j, i = int(round(canal_ji[r, 0])), int(round(canal_ji[r, 1]))
        out[k, max(0, j - rr) : j + rr + 1, max(0, i - rr) : i + rr + 1] = True
    return out


def _largest_per_label(lab: np.ndarray) -> np.ndarray:
    out = np.zeros_like(lab)
    for s, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        m = lab[sl] == s
        cc, n = ndi.label(m)
        if n > 1:
            sizes = np.bincount(cc.ravel())
            sizes[0] = 0
            m = cc == np.argmax(sizes)
        out[sl][m] = s
    return out


def _hull(*boxes):
    """The smallest box (tuple of slices) holding every box given; None for none (None boxes are empty)."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def _to_full(lab_w: np.ndarray, grid, arr: np.ndarray, mapping: dict, ref: hu_reference.HuReference):
    """Work labels -> full grid: smooth union boundary (linear), labels by nearest, bone-refined.
    Returns (labels on the full grid, the box outside which they are all zero, or None when empty)."""
    lut = np.zeros(int(lab_w.max()) + 1, np.int16)
    for s, v in mapping.items():
        if s < len(lut):
            lut[s] = v
    lab_w = lut[lab_w]
    out = np.zeros(grid.full_shape, np.int16)
    if not lab_w.any():
        return out, None
    idx = np.argwhere(lab_w > 0)
    lo = np.floor(grid.work_to_full_kji(idx.min(0) - 2)).astype(int)
    hi = np.ceil(grid.work_to_full_kji(idx.max(0) + 2)).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, grid.full_shape)
    box = (lo, hi)
    soft = ndi.gaussian_filter((lab_w > 0).astype(np.float32), 0.5)
    union = workgrid.to_full(soft, grid, 0.0, linear=True, box=box) > 0.45
    nearest = workgrid.to_full(ndi.grey_dilation(lab_w, size=3), grid, 0, linear=False, box=box)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    blk = np.where(union, nearest, 0).astype(np.int16, copy=False)
    # refine against the full-resolution image: drop fat caught at the boundary (denoised first so
    # that noise inside a low-density body does not punch holes in it)
    sm = ref.to_nominal(ndi.gaussian_filter(arr[sl].astype(np.float32), 1.0))
    blk[(sm < -30) & (ndi.grey_erosion(blk, size=3) != blk)] = 0
    out[sl] = blk
    return out, sl


def _partial_levels(lab: np.ndarray) -> list[int]:
    border = set()
    for ax in range(3):
        for sl in (0, -1):
            face = np.take(lab, sl, axis=ax)
            border.update(int(x) for x in np.unique(face) if x)
    return sorted(border, key=lambda x: lv.ORDER.index(x) if x in lv.ORDER else 99)
