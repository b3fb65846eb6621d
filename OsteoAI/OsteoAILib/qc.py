"""Quality-control flags: short ``"code: clear text"`` strings, per level and per scan.

Every check is a small function returning a list of flags (empty when all is well). ``FLAGS``
lists every code and whether it takes the level out of the diagnosis (``EXCLUDING``): a vBMD
that is probably wrong for a known reason (fracture, metal, cut by the field of view, too few
voxels, impossible value) must not decide the category; the other flags are warnings kept
beside the number.
"""

from __future__ import annotations

import numpy as np
from OsteoAIBaseLib.levels import NAMES
from OsteoAIBaseLib.volume import Volume
from scipy import ndimage as ndi

from .label_boxes import cached_label_boxes
from .roi import height_resolution_mm, scan_hu_map

# code -> (excludes the level from the diagnosis, meaning)
FLAGS: dict[str, tuple[bool, str]] = {
    "fracture": (True, "vertebral compression fracture (Genant grade 1-3): the body reads falsely dense"),
    "roi_small": (True, "trabecular ROI below the minimum volume: the mean is unreliable"),
    "fov_cut": (True, "vertebra partly outside the field of view"),
    "body_cut": (True, "vertebral body partly outside the field of view (from the ROI placer)"),
    "metal": (True, "metal or streak artifacts near the vertebra"),
    "implausible": (True, "vBMD outside 0-350 mg/cm3: a measurement or segmentation error"),
    "no_roi": (True, "no trabecular ROI could be placed"),
    "seg_suspect": (True, "the vertebra's split looks wrong (a disc missed or misplaced): the ROI may straddle a disc"),
    "contrast": (False, "iodinated contrast in the aorta: trabecular HU and vBMD read high"),
    "noise": (False, "high image noise (low dose or sharp kernel): wider uncertainty"),
    "calib_fit": (False, "reference tissues fit the calibration line poorly"),
    "calib_refs": (False, "too few reference tissues for the internal calibration"),
    "calib_slope": (False, "implausible calibration slope: the scanner scale or a reference is off"),
    "uncalibrated": (False, "no scanner calibration: the standard conversion was used"),
    "kvp_unknown": (False, "tube voltage unknown: 120 kV assumed"),
}
EXCLUDING = {c for c, (excl, _) in FLAGS.items() if excl}

METAL_ABOVE_HU = 3000.0  # cortical bone reaches ~2500 HU at 80 kVp (physics.hu); metal saturates near 3071
METAL_MIN_MM3 = 5.0
STREAK_RATIO = 2.0  # high-frequency noise this many times that of metal-free slices: streaks
NEIGHBOURHOOD_MM = 20.0
MIN_ROI_MM3 = 500.0  # as roi.py: a central ellipse of even the smallest thoracic body is larger
NOISE_HIGH_HU = 35.0
VBMD_RANGE = (0.0, 350.0)
GENANT = ((0.40, 3), (0.25, 2), (0.20, 1))  # height loss -> grade (Genant 1993)


def code(flag: str) -> str:
    return flag.split(":", 1)[0].strip()


def excluding_reasons(flags: list[str]) -> list[str]:
    """The flags that take a level out of the diagnosis."""
    return [f for f in flags if code(f) in EXCLUDING]


def _name(label) -> str:
    return NAMES.get(int(label), str(label)) if label is not None else "the vertebra"


# --- contrast ----------------------------------------------------------------------------------


def contrast_flags(references: dict, kvp: float = 120.0) -> list[str]:
    from .calibration import detect_contrast

    enhanced, msg = detect_contrast(references, kvp)
    return [msg] if enhanced else []


# --- metal and streaks -------------------------------------------------------------------------


def highpass_sd(a: np.ndarray) -> float | None:
    """SD of the in-plane high-pass image over soft tissue away from tissue boundaries (fat and
    water-like tissue each eroded): image noise plus any streaks."""
    sm = ndi.uniform_filter(a, size=(1, 5, 5))
    st = np.ones((1, 5, 5), bool)
    soft = ndi.binary_erosion((sm > -250) & (sm < -40), structure=st)
    soft |= ndi.binary_erosion((sm > -10) & (sm < 250), structure=st)
    if soft.sum() < 200:
        return None
    return float(np.std((a - ndi.uniform_filter(a, size=(1, 3, 3)))[soft]))


def metal_flags(vol: Volume, region: np.ndarray, label=None, box=None, hu_scale=(1.0, 0.0)) -> list[str]:
    """Metal (a cluster above METAL_ABOVE_HU) within 20 mm of ``region`` (a vertebra or ROI mask on
    ``vol``'s grid, or only its part inside ``box``, a tuple of slices), or streaks there from
    metal elsewhere in the same slices. ``hu_scale``: (scale, offset) of this scan's HU against
    nominal HU (the segmenter's tissue peaks): dense cortex must not pass for metal on a scanner
    whose scale reads high."""
    above = hu_scale[0] * METAL_ABOVE_HU + hu_scale[1]
    if box is None:
        if not region.any():
            return []
        box = ndi.find_objects(region.astype(np.uint8))[0]
    pad = [int(np.ceil(NEIGHBOURHOOD_MM / s)) for s in (vol.spacing[2], vol.spacing[1], vol.spacing[0])]
    sl = tuple(slice(max(b.start - p, 0), min(b.stop + p, n)) for b, p, n in zip(box, pad, vol.shape, strict=True))
    a = vol.array[sl].astype(np.float32)
    vox_mm3 = vol.voxel_volume_mm3
    hot = a > above
    if hot.sum() * vox_mm3 >= METAL_MIN_MM3:
        lab, n = ndi.label(hot)
        biggest = ndi.sum(hot, lab, index=np.arange(1, n + 1)).max() * vox_mm3
        if biggest >= METAL_MIN_MM3:
            return [
                f"metal: {biggest:.0f} mm3 above {METAL_ABOVE_HU:.0f} HU within {NEIGHBOURHOOD_MM:.0f} mm "
                f"of {_name(label)}"
            ]
    # Streaks without metal nearby need metal somewhere in these slices (a prosthesis, a stent);
    # they are judged against the same in-plane region in metal-free slices (same anatomy).
    hot_k = _hot_slices(vol, above)
    if not hot_k[sl[0]].any():
        return []
    near = ndi.binary_dilation(hot_k, iterations=int(np.ceil(30.0 / vol.spacing[2])))
    ref_k = np.nonzero(~near)[0]
    if ref_k.size == 0:
        return []
    ref_k = ref_k[np.round(np.linspace(0, ref_k.size - 1, min(8, ref_k.size))).astype(int)]
    ref = highpass_sd(vol.array[ref_k][:, sl[1], sl[2]].astype(np.float32))
    local = highpass_sd(a)
    if ref and local and local > STREAK_RATIO * ref:
        return [
            f"metal: streak artifacts from metal in the same slices cross {_name(label)} "
            f"(high-frequency noise {local:.0f} HU, {local / ref:.1f}x that of metal-free slices)"
        ]
    return []


_HOT_CACHE: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}


def _hot_slices(vol: Volume, above: float = METAL_ABOVE_HU) -> np.ndarray:
    """Slices holding metal (computed once per volume array: level_flags runs per level)."""
    key = (id(vol.array), above)
    hit = _HOT_CACHE.get(key)
    if hit is None or hit[0] is not vol.array:
        _HOT_CACHE.clear()
        counts = np.array([(s > above).sum() for s in vol.array])
        hit = (vol.array, counts * vol.voxel_volume_mm3 >= METAL_MIN_MM3)
        _HOT_CACHE[key] = hit
    return hit[1]


# --- compression fracture ----------------------------------------------------------------------


def genant_grade(loss: float) -> int:
    for thr, g in GENANT:
        if loss > thr - 1e-9:
            return g
    return 0


def vertebral_heights(body: np.ndarray, spacing, axis_kji=None) -> dict[str, float] | None:
    """Anterior, middle and posterior heights (mm) of one vertebral body mask (canonical grid).

    Measured along the spine's cranio-caudal axis at this level (``axis_kji``, a (k, j, i) vector
    in mm, e.g. between the neighbouring bodies' centroids; default: the body's principal axis
    nearest k), so a tilted body in a lordotic or kyphotic spine is not read as a wedge, and a
    wedge does not tilt its own axis. In a 5 mm mid-sagittal slab:
    the extent along that axis of each column at 3-15%, 42-58% and 85-97% of the body's
    antero-posterior depth; each height is the median over the columns of its band.
    """
    si, sj, sk = spacing
    kji = np.argwhere(body)
    if kji.shape[0] < 20:
        return None
    p = kji * np.array([sk, sj, si], float)
    p -= p.mean(axis=0)
    if axis_kji is not None and np.linalg.norm(axis_kji) > 0:
        u_h = np.asarray(axis_kji, float) / np.linalg.norm(axis_kji)
    else:
        _, vecs = np.linalg.eigh(np.cov(p.T))
        u_h = vecs[:, int(np.argmax(np.abs(vecs[0])))]  # the axis closest to k (superior)
    u_h = u_h * np.sign(u_h[0])
    u_ap = np.array([0.0, 1.0, 0.0]) - u_h[1] * u_h  # j (posterior) made orthogonal to the height axis
    u_ap /= np.linalg.norm(u_ap)
    u_lat = np.cross(u_h, u_ap)
    h, d, w = p @ u_h, p @ u_ap, p @ u_lat
    slab = np.abs(w - np.median(w)) <= max(2.5, 0.6 * si)
    if slab.sum() < 10:
        return None
    h, d, w = h[slab], d[slab], w[slab]
    cell = max(si, sj, sk) * 0.75
    kd = np.floor((d - d.min()) / cell).astype(np.int64)
    kw = np.floor((w - w.min()) / cell).astype(np.int64)
    key = kd * (int(kw.max()) + 1) + kw
    order = np.argsort(key, kind="stable")
    key, h, kd = key[order], h[order], kd[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    extent = np.maximum.reduceat(h, starts) - np.minimum.reduceat(h, starts)
    col_d = (kd[starts] + 0.5) * cell
    depth = d.max() - d.min()
    step = abs(u_h[0]) * sk + abs(u_h[1]) * sj + abs(u_h[2]) * si  # one voxel along the height axis
    out = {}
    for name, (a, b) in {"anterior": (0.03, 0.15), "middle": (0.42, 0.58), "posterior": (0.85, 0.97)}.items():
        sel = (col_d >= a * depth) & (col_d <= b * depth)
        if not sel.any():
            return None
        out[name] = float(np.median(extent[sel] + step))
    return out


def fracture_grade(
    heights: dict[str, float], neighbours: list[dict] | None = None, label=None
) -> tuple[int, float, str]:
    """(Genant grade, height loss 0-1, which comparison) from the three heights of one body,
    compared with its own largest height (wedge, biconcave) and with its neighbours' (crush).

    A thoracic body is normally a little shorter in front (the kyphosis): its anterior height is
    compared with the posterior one less that physiological wedge. Against the neighbours each
    height is compared with theirs at the same place (front with front), as Genant's reading does.
    """
    keys = [k for k in ("anterior", "middle", "posterior") if heights.get(k)]
    if len(keys) < 2:
        return 0, 0.0, ""
    h = {k: heights[k] for k in keys}
    if "anterior" in h:
        h["anterior"] = h["anterior"] / (1.0 - _wedge(label))
    loss, how = 1.0 - min(h.values()) / max(h.values()), "own"
    nbs = [n for n in (neighbours or []) if n and any(n.values())]
    for k in keys:
        ref = [n[k] for n in nbs if n.get(k)]
        if ref:
            loss_nb = 1.0 - heights[k] / float(np.mean(ref))
            if loss_nb > loss:
                loss, how = loss_nb, "neighbours"
    return genant_grade(loss), float(loss), how


SPLIT_MIRROR = 0.5  # a neighbour showing at least half the opposite deformity mirrors this one
REVERSE_WEDGE = 0.1  # posterior height this much below the anterior one
# thoracic bodies are wedged in the kyphosis, ~5-10% shorter in front (more at the apex): a plane
# tilted wrong moves both neighbours away from that shape, not away from a square body
THORACIC_WEDGE = 0.08


def _wedge(label) -> float:
    return THORACIC_WEDGE if label is not None and 8 <= int(label) <= 19 else 0.0


SHIFT_MATCH = 0.75  # a neighbour's excess over its own neighbours, against this body's deficit


def _shifted_plane(heights: dict, neighbours: list[dict], beyond: list[dict | None]) -> bool:
    """A disc plane set off by x takes x from this body and gives it to the neighbour: against their
    own neighbours the one lacks 1.5x and the other has 1.5x too much. A crush of x leaves the
    neighbour only x/2 above the mean of its neighbours (one of which is the crushed body)."""
    own = heights.get("middle")
    mids = [n.get("middle") for n in neighbours]
    if not own or not all(mids):
        return False
    deficit = float(np.mean(mids)) - own
    if deficit <= 0:
        return False
    for n_mid, b in zip(mids, beyond, strict=False):
        if b and b.get("middle") and n_mid - 0.5 * (own + b["middle"]) >= SHIFT_MATCH * deficit:
            return True
    return False


def split_error(
    heights: dict[str, float], neighbours: list[dict], how: str, label=None, beyond: list[dict | None] | None = None
) -> str | None:
    """Why a height loss looks like a misplaced disc plane rather than a fracture, or None.

    A disc plane set too high or too low moves height from one body to the next, and a plane set
    at the wrong tilt moves it from the front of one body to the front of the next: the neighbour
    shows the mirror image (taller, or wedged the other way). A fracture leaves its neighbours as
    they are. Against neighbours that disagree with each other there is no expected height at all.
    And a body shortest at the back with its front preserved is no osteoporotic fracture pattern.
    """
    a, m, p = (heights.get(k) for k in ("anterior", "middle", "posterior"))
    if a and p and p <= min(a, m or a) and (a - p) >= REVERSE_WEDGE * a:
        # an osteoporotic fracture keeps the posterior wall: shortest at the back with the front
        # preserved is a tilted plane (or a lordotic level), not a fracture pattern
        return "it is shortest at the back with the front preserved, which no osteoporotic fracture does"
    nbs = [n for n in neighbours if n and all(n.get(k) for k in ("anterior", "posterior"))]
    if how == "neighbours":
        tops = [max(v for v in n.values() if v) for n in nbs]
        if len(tops) < 2:
            return "only one neighbour to compare with"
        if max(tops) > 1.2 * min(tops):
            return "the neighbours' heights disagree (one of them has taken this body's height)"
        if beyond and _shifted_plane(heights, [n for n in neighbours if n], beyond):
            return "a neighbour is taller than its own neighbours by what this body lacks (a disc plane set off)"
    if a and p:
        w = _wedge(label)
        tilt = (p - a) / max(a, p) - w
        for n in nbs:
            other = (n["posterior"] - n["anterior"]) / max(n["anterior"], n["posterior"]) - w
            if tilt * other < 0 and abs(other) >= SPLIT_MIRROR * abs(tilt):
                return "a neighbour is wedged the other way (a tilted disc plane)"
    return None


def fracture_flags(
    heights: dict[str, float] | None, label=None, neighbours=None, resolution_mm: float = 0.0, beyond=None
) -> list[str]:
    """Genant grade of one body, or why its height loss is a split error; nothing when the loss in mm is
    below ``resolution_mm``: the slice thickness (each endplate is read to about half a slice) plus the
    step of the grid the segmenter placed its disc planes on."""
    if not heights:
        return []
    g, loss, how = fracture_grade(heights, neighbours, label)
    if g == 0:
        return []
    h = [v for v in heights.values() if v]
    if loss * max(h) < resolution_mm:
        return []
    why = split_error(heights, list(neighbours or []), how, label, beyond)
    if why:
        return [
            f"seg_suspect: {_name(label)} reads {loss:.0%} short, but {why}: the split, not the bone, "
            "is probably wrong; not graded as a fracture"
        ]
    ref = "its own largest height" if how == "own" else "the neighbouring vertebrae"
    hs = ", ".join(f"{k[0].upper()} {v:.1f}" for k, v in heights.items())
    return [f"fracture: {_name(label)} Genant grade {g} ({loss:.0%} height loss against {ref}; heights mm {hs})"]


# --- ROI, field of view, noise, calibration, vBMD ----------------------------------------------


def roi_small_flags(roi_volume_mm3: float, label=None, min_mm3: float = MIN_ROI_MM3) -> list[str]:
    if roi_volume_mm3 >= min_mm3:
        return []
    return [f"roi_small: {_name(label)} trabecular ROI {roi_volume_mm3:.0f} mm3 is below {min_mm3:.0f} mm3"]


def fov_flags(mask: np.ndarray, label=None) -> list[str]:
    """The vertebra touches the edge of the scanned volume (top/bottom slice or in-plane border)."""
    if not mask.any():
        return []
    sides = []
    names = (("bottom", "top"), ("front", "back"), ("right", "left"))
    for ax in range(3):
        proj = mask.any(axis=tuple(a for a in range(3) if a != ax))
        if proj[0]:
            sides.append(names[ax][0])
        if proj[-1]:
            sides.append(names[ax][1])
    if not sides:
        return []
    return [f"fov_cut: {_name(label)} touches the {'/'.join(sides)} edge of the scan"]


def estimate_noise_sigma(vol: Volume, refs: dict | None = None) -> float | None:
    """Image noise (HU) in the body: the smaller robust SD of the fat and muscle references.

    Tissue texture only adds to a reference's spread, so the smaller is closer to pure noise; the
    SDs are robust (MAD) estimates over thousands of voxels. Outside air is the fallback only: it
    is usually quieter than the body (bow-tie filter, no attenuation) and may be clipped.
    ``refs`` is the output of ``reference_tissues.measure_references`` (or a calibration's
    ``references``); measured when None.
    """
    if refs is None:
        from .reference_tissues import measure_references

        refs = measure_references(vol, None)

    def sd_of(n):
        r = refs.get(n) or {}
        sd, nvox = r.get("sd_hu"), r.get("n_voxels", 0) or 0
        if sd is None or nvox < 30 or "clipped" in str(r.get("why", "")):
            return None
        return float(sd)

    inside = [x for x in (sd_of("fat"), sd_of("muscle")) if x is not None]
    if inside:
        return min(inside)
    return sd_of("air")


def noise_flags(sigma_hu: float | None, threshold: float = NOISE_HIGH_HU) -> list[str]:
    if sigma_hu is None or sigma_hu <= threshold:
        return []
    return [
        f"noise: image noise {sigma_hu:.0f} HU exceeds {threshold:.0f} HU (low dose or sharp kernel); "
        "vBMD is less precise"
    ]


def calibration_flags(cal) -> list[str]:
    """The calibration's own flags that concern fit quality (the calibration writes them)."""
    keep = {"calib_fit", "calib_refs", "calib_slope", "uncalibrated"}
    return [f for f in (cal.qc or []) if code(f) in keep]


def implausible_flags(vbmd_mg_cm3: float | None, label=None) -> list[str]:
    if vbmd_mg_cm3 is None:
        return []
    lo, hi = VBMD_RANGE
    if lo <= vbmd_mg_cm3 <= hi:
        return []
    return [f"implausible: {_name(label)} vBMD {vbmd_mg_cm3:.0f} mg/cm3 is outside {lo:.0f}-{hi:.0f}"]


# --- pipeline hooks ----------------------------------------------------------------------------


def _label_mask(arr: np.ndarray, lab: int):
    boxes = cached_label_boxes(arr)
    if lab < 1 or lab > len(boxes) or boxes[lab - 1] is None:
        return None, None
    sl = boxes[lab - 1]
    return sl, arr[sl] == lab


def _centroid_mm(arr, lab, spacing):
    sl, m = _label_mask(arr, lab)
    if m is None:
        return None, None
    c = np.argwhere(m).mean(axis=0) + [x.start for x in sl]
    cut = sl[0].start == 0 or sl[0].stop == arr.shape[0]
    return c * np.array([spacing[2], spacing[1], spacing[0]]), cut


_HEIGHT_CACHE: dict[tuple[int, int], tuple[np.ndarray, dict | None]] = {}


def level_heights(seg, lab: int, spacing, rois=None) -> dict[str, float] | None:
    """Anterior/middle/posterior heights of a body: the ROI placer's when it gave them, else measured
    on ``seg.bodies`` along the spine axis between the neighbouring bodies. None when the body is
    missing or cut by the top or bottom of the scan."""
    if lab in set((getattr(seg, "info", None) or {}).get("partial_levels", [])):
        return None  # a body cut by the scan's edge is not short, only partly seen
    info = getattr(rois, "info", {}).get(lab) if rois is not None else None
    h = getattr(info, "heights_mm", None) if info is not None else None
    if h and all((h.get(k) or 0) > 0 for k in ("anterior", "middle", "posterior")):
        return {k: float(h[k]) for k in ("anterior", "middle", "posterior")}
    bodies = getattr(seg, "bodies", None)
    if bodies is None:
        return None
    c, cut = _centroid_mm(bodies, lab, spacing)
    if c is None or cut:
        return None
    levels = list(getattr(seg, "levels", []) or [])
    nb = []
    if lab in levels:
        i = levels.index(lab)
        nb = [levels[j] for j in (i - 1, i + 1) if 0 <= j < len(levels)]
    cents = [x for x in (_centroid_mm(bodies, n, spacing)[0] for n in nb) if x is not None]
    axis = None
    if len(cents) == 2:
        axis = cents[0] - cents[1]
    elif len(cents) == 1:
        axis = cents[0] - c
    if axis is not None and axis[0] < 0:
        axis = -axis
    key = (id(bodies), int(lab))
    hit = _HEIGHT_CACHE.get(key)
    if hit is not None and hit[0] is bodies:
        return hit[1]
    if len(_HEIGHT_CACHE) > 64:
        _HEIGHT_CACHE.clear()
    sl, m = _label_mask(bodies, lab)
    h = vertebral_heights(m, spacing, axis)
    _HEIGHT_CACHE[key] = (bodies, h)
    return h


def level_flags(vol: Volume, seg, rois, cal, lab: int) -> list[str]:
    """Per-level checks before vBMD: fracture, metal/streaks, ROI size, field of view."""
    flags: list[str] = []
    levels = list(getattr(seg, "levels", []) or [])
    seg_info = getattr(seg, "info", None) or {}
    heights = level_heights(seg, lab, vol.spacing, rois)
    if heights:
        pairs = []  # (neighbour, the level beyond it) above and below
        if lab in levels:
            idx = levels.index(lab)

            def at(j):
                return level_heights(seg, levels[j], vol.spacing, rois) if 0 <= j < len(levels) else None

            pairs = [(at(idx - 1), at(idx - 2)), (at(idx + 1), at(idx + 2))]
        nbs = [n for n, _b in pairs if n]
        flags += fracture_flags(
            heights, lab, nbs, resolution_mm=height_resolution_mm(seg, vol.spacing), beyond=[b for n, b in pairs if n]
        )
    sl, m = _label_mask(seg.vertebrae, lab)
    if m is not None:
        flags += metal_flags(vol, m, lab, box=sl, hu_scale=scan_hu_map(seg))
        if lab not in set(seg_info.get("partial_levels", [])):
            # The box is tight around the label: it touches an edge exactly when the vertebra does.
            sides = [
                ("bottom", sl[0].start == 0),
                ("top", sl[0].stop == vol.shape[0]),
                ("front", sl[1].start == 0),
                ("back", sl[1].stop == vol.shape[1]),
                ("right", sl[2].start == 0),
                ("left", sl[2].stop == vol.shape[2]),
            ]
            cut = [name for name, touches in sides if touches]
            if cut:
                flags.append(f"fov_cut: {_name(lab)} touches the {'/'.join(cut)} edge of the scan")
    info = getattr(rois, "info", {}).get(lab) if rois is not None else None
    already = {code(f) for f in (getattr(info, "qc", None) or [])}
    if "roi_small" not in already and "no_roi" not in already and rois is not None:
        lm = getattr(rois, "labelmap", None)
        if lm is not None:
            _, mr = _label_mask(lm, lab)
            vol_mm3 = 0.0 if mr is None else float(mr.sum()) * vol.voxel_volume_mm3
            if vol_mm3 > 0:
                flags += roi_small_flags(vol_mm3, lab)
    return flags


def scan_flags(vol: Volume, seg, cal) -> list[str]:
    """Per-scan checks: image noise (the calibration already flags contrast and fit quality)."""
    refs = cal.references if cal is not None and cal.references else None
    if refs is not None and not any((r or {}).get("sd_hu") for r in refs.values()):
        refs = None
    return noise_flags(estimate_noise_sigma(vol, refs))
