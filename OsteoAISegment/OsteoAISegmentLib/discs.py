"""Body centreline and intervertebral discs on the work grid.

The vertebral bodies lie just anterior to the canal. Along the body centreline the density drops
at every disc (and the endplates on either side are bright), so the discs are the regularly
spaced minima of a density profile sampled perpendicular to the spine axis. Each disc becomes a
plane (point + normal), tilted to the orientation where the disc is darkest.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

BODY_HU = 100.0
ENERGY_WEIGHT = 2.0  # against the four dark-band terms (each scaled to ~1)
BRIGHT_WEIGHT = 4.0
THICK_DISC_PITCH_MM = 30.0  # vertebral pitch from which discs are thick enough to read dark
POLARITIES = ("dark", "bright")
POLARITY_MARGIN = 0.15  # how much stronger the bands under "bright" must be
ENERGY_MARGIN = 0.1  # ... and, on slices thin enough to resolve a disc, how much more energetic
PEDICLE_WEIGHT = 3.0  # the pedicle edge against the band terms, on slices too thick to resolve a thin disc


def body_centerline(work: np.ndarray, canal_ji: np.ndarray, k0: int, ws: float) -> dict:
    """Per slice of the canal range: posterior/anterior body wall j and body centre (j, i)."""
    sm = ndi.gaussian_filter(work, 0.7)
    n = len(canal_ji)
    pw = np.full(n, np.nan)
    aw = np.full(n, np.nan)
    bi = np.full(n, np.nan)
    reach = int(25 / ws)
    depth = int(65 / ws)
    half = max(1, int(5 / ws))
    for r in range(n):
        k = k0 + r
        cj, ci = canal_ji[r]
        j, i = int(round(cj)), int(round(ci))
        if not (0 <= k < work.shape[0] and 0 <= i < work.shape[2]):
            continue
        col = sm[k, :, max(0, i - half) : i + half + 1].mean(1)
        # posterior wall: first bone voxel anterior to the canal centre
        seg = col[max(0, j - reach) : j + 1][::-1]
        hit = np.nonzero(seg > 150)[0]
        if len(hit) == 0:
            continue
        p = j - hit[0]
        run = col[max(0, p - depth) : p + 1][::-1]
        low = np.nonzero(ndi.uniform_filter1d((run > BODY_HU).astype(float), 3) < 0.34)[0]
        a = p - (low[0] if len(low) else len(run) - 1)
        a = _neck(sm[k], p, a, i, ws, a)
        if (p - a) * ws < 12:
            continue  # a disc or no body here: interpolate later
        pw[r], aw[r] = p, a
        # lateral centre: middle of the bony run across the body at mid-depth
        jm = int(round((p + a) / 2))
        row = sm[k, max(0, jm - half) : jm + half + 1, :].mean(0)
        w0 = int(30 / ws)
        lo, hi = max(0, i - w0), min(work.shape[2], i + w0 + 1)
        idx = np.nonzero(row[lo:hi] > BODY_HU)[0]
        bi[r] = lo + (idx.min() + idx.max()) / 2 if len(idx) else ci
    ok = ~np.isnan(pw)
    if ok.sum() >= 5:
        # a structure stuck to the front of the body (enhanced aorta) can make a few slices look
        # far too deep; bodies within one scan vary less than this
        cap = 1.3 * float(np.median(pw[ok] - aw[ok]))
        aw[ok] = np.maximum(aw[ok], pw[ok] - cap)
    out = {"valid": ok}
    ks = np.arange(n)
    for name, arr, fallback in (
        ("post_wall_j", pw, canal_ji[:, 0] - 10 / ws),
        ("ant_wall_j", aw, canal_ji[:, 0] - 45 / ws),
        ("body_i", bi, canal_ji[:, 1]),
    ):
        if ok.sum() >= 2:
            v = np.interp(ks, ks[ok], ndi.median_filter(arr[ok], 5, mode="nearest"))
            v = ndi.gaussian_filter1d(v, 3 / ws * 1.5, mode="nearest")
        else:
            v = fallback
        out[name] = v
    out["body_j"] = (out["post_wall_j"] + out["ant_wall_j"]) / 2
    out["depth_mm"] = (out["post_wall_j"] - out["ant_wall_j"]) * ws
    return out


def _neck(sl: np.ndarray, p: int, a: int, i: int, ws: float, default: int) -> int:
    """Anterior wall where a dense structure touching the body (an enhanced aorta) begins.

    Walking forward from the posterior wall, the dense row through column ``i`` is as wide as the
    body; where two touching round structures meet, that width pinches to a neck.
    """
    if p - a < 6:
        return default
    dense = sl[a : p + 1, :] > BODY_HU
    widths = np.zeros(p - a + 1)
    for r in range(p - a + 1):
        row = dense[r]
        if not row[i]:
            continue
        left = np.nonzero(~row[:i])[0]
        right = np.nonzero(~row[i:])[0]
        lo = left[-1] + 1 if len(left) else 0
        hi = i + right[0] if len(right) else len(row)
        widths[r] = (hi - lo) * ws
    widths = widths[::-1]  # posterior -> anterior
    best = 0.0
    start = int(12 / ws)  # the body is at least this deep
    # the body's own width, read a few mm in front of its posterior wall (behind it the pedicles
    # widen the row); a dense row far wider than that further forward is an enhanced organ (the
    # liver, at low kVp as dense as bone) touching the body's front
    ref = widths[int(4 / ws) : start + 1]
    ref = ref[ref > 0]
    if len(ref) >= 2 and np.median(ref) > 20:
        ref_w = float(np.median(ref))
        wide = np.nonzero(widths[start:] > 1.6 * ref_w)[0]
        if len(wide):
            default = max(default, p - (start + int(wide[0])) + 1)
            widths[start + int(wide[0]) :] = 0.0
    for r, w in enumerate(widths):
        best = max(best, w)
        if r >= start and best > 20 and w < 0.6 * best:
            # the neck is the narrowest row of this pinch
            seg = widths[r : r + int(6 / ws) + 1]
            neck = p - (r + int(np.argmin(seg)))
            # only a denser structure in front (an enhanced vessel) counts, not a thin waist of
            # an osteoporotic body
            col = sl[:, max(0, i - 1) : i + 2].mean(1)
            front = float(np.median(col[default:neck])) if neck > default else 0.0
            body = float(np.median(col[neck : p + 1]))
            if front > 1.3 * body + 50:
                return neck
            # an enhanced vessel as dense as the body (low kVp, dense bone): a round structure
            # narrower than the body and deeper than a cortex in front of the neck
            fr = widths[r + int(np.argmin(seg)) :]
            if (neck - default) * ws >= 10 and len(fr) and fr.max() < 0.75 * best and front > 150:
                return neck
            return default
    return default


def _frames(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit tangent (pointing cranial) and two normals at each curve point (k, j, i)."""
    t = np.gradient(pts, axis=0)
    t = ndi.gaussian_filter1d(t, 3, axis=0, mode="nearest")
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    lat = np.array([0.0, 0.0, 1.0])
    u = lat - (t @ lat)[:, None] * t
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(t, u)
    return t, u, v


def disk_means(work: np.ndarray, pts: np.ndarray, normals: np.ndarray, radius_vox: float) -> np.ndarray:
    """Mean value over a disk of ``radius_vox`` centred at each point, perpendicular to its normal."""
    lat = np.array([0.0, 0.0, 1.0])
    u = lat - (normals @ lat)[:, None] * normals
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-6)
    v = np.cross(normals, u)
    r = np.arange(-radius_vox, radius_vox + 0.01, 1.0)
    a, b = np.meshgrid(r, r, indexing="ij")
    keep = a * a + b * b <= radius_vox * radius_vox
    a, b = a[keep], b[keep]
    coords = pts[:, None, :] + a[None, :, None] * u[:, None, :] + b[None, :, None] * v[:, None, :]
    vals = ndi.map_coordinates(work, coords.reshape(-1, 3).T, order=1, mode="nearest")
    return vals.reshape(len(pts), -1).mean(1)


def ap_line_p90(
    work: np.ndarray, pts: np.ndarray, t: np.ndarray, ant_j: np.ndarray, post_j: np.ndarray, ws: float
) -> np.ndarray:
    """90th percentile of lines across the body from the anterior to the posterior wall.

    At mid-body the lines cross the cortical walls (bright); across a disc they do not. This
    separates discs from the dark mid-body of osteoporotic or vein-rich vertebrae, which a
    plain mean cannot.
    """
    ap = np.array([0.0, -1.0, 0.0])
    ap = ap - (t @ ap)[:, None] * t
    ap /= np.linalg.norm(ap, axis=1, keepdims=True)
    lat = np.cross(t, ap)
    out = np.zeros(len(pts))
    nsamp = 24
    fr = np.linspace(0, 1, nsamp)
    for q in range(len(pts)):
        a_len = (post_j[q] - ant_j[q]) + 4 / ws
        # from 3 mm in front of the anterior wall to 1 mm behind the posterior wall
        start = pts[q] + ap[q] * ((pts[q, 1] - ant_j[q]) + 3 / ws)
        line = start[None, :] - ap[q][None, :] * (fr[:, None] * a_len)
        vals = []
        for off in (-6, -3, 0, 3, 6):
            c = line + lat[q][None, :] * (off / ws)
            vals.append(np.percentile(ndi.map_coordinates(work, c.T, order=1, mode="nearest"), 90))
        out[q] = np.mean(vals)
    return out


def find_discs(
    work: np.ndarray,
    pts: np.ndarray,
    ws: float,
    radius_mm: float,
    depth_mm: np.ndarray,
    ant_j: np.ndarray | None = None,
    post_j: np.ndarray | None = None,
    polarity: str = "auto",
    thick_slices: bool = False,
    edge_mm: float = 0.0,
) -> tuple[list[int], np.ndarray, np.ndarray, str]:
    """Indices along ``pts`` (1-voxel steps, caudal -> cranial) of the discs, the score, the local pitch
    and the polarity used.

    ``polarity`` says how the discs read. "dark": a disc is dark in the body centre and has no
    cortical wall across it (resolved discs: thin slices, thick lumbar discs). "bright": a thin
    disc averaged with its two sclerotic endplates into one band brighter than the body (slices as
    thick as the disc). "auto": whichever reading's discs sit on the stronger bands. Either way the
    narrow band's contrast counts too. ``thick_slices``: the slices are thicker than a thoracic disc
    (> 3 mm): the pedicle profile joins the score and the bands' sign decides the reading. Discs
    are kept about one vertebral pitch apart (pitch scales with the body's AP depth: T1 ~20 mm,
    L3 ~36 mm). ``edge_mm``: how far from each end of ``pts`` the depth is not trusted (the scan's
    outermost slices).
    """
    t, _u, _v = _frames(pts)
    # sample the anterior half of the body: the basivertebral vein darkens the posterior centre
    # at mid-height, which would otherwise read like a disc
    ctr = pts.copy()
    if ant_j is not None and post_j is not None:
        depth_vox = np.maximum(post_j - ant_j, 1.0)
        ctr[:, 1] = pts[:, 1] - 0.15 * depth_vox
        rad = np.minimum(radius_mm / ws, 0.25 * float(np.median(depth_vox)))
    else:
        rad = radius_mm / ws
    prof = disk_means(work, ctr, t, float(rad))
    feats = [prof]
    if ant_j is not None and post_j is not None:
        feats.append(ap_line_p90(work, pts, t, ant_j, post_j, ws))
    # a disc is a narrow dark band with a bright endplate within ~8 mm on BOTH sides; the dark
    # mid-body is wide, its nearest endplates are farther away
    # (two reaches: thin thoracic discs / short bodies, and thick lumbar discs)
    dark = np.zeros(len(pts))
    for f in feats:
        for br in _dark_bands(f, ws):
            dark += br / max(np.percentile(br, 95) - np.percentile(br, 5), 1.0)
    # the narrow band's contrast whatever its sign: a thin disc between sclerotic endplates can read
    # dark, or, on a slice thicker than the disc, blur with them into one band brighter than the body
    en = _unit(_band_energy(prof, ws))
    depth = np.asarray(depth_mm, float)
    # thoracic bodies are deeper than tall (pitch ~0.85 depth), lumbar ones not (~1.1 depth)
    # a depth misread at one body (osteoporotic, or a vessel in front) must not bend the pitch
    # locally: only its trend along the spine counts. The outermost slices cut the body and are
    # the least reliable (under noise a depth there read half its value); repeated beyond the
    # end by the smoothing, such a misread would bend the trend over a whole vertebra, so the depth
    # is held there from the first sample inside
    edge = int(round(edge_mm / ws))
    if 0 < edge and len(depth) > 2 * edge + 1:
        depth = depth.copy()
        depth[:edge], depth[-edge:] = depth[edge], depth[-edge - 1]
    depth = ndi.gaussian_filter1d(depth, 40.0 / ws, mode="nearest") if len(depth) > 3 else depth
    pitch0 = np.clip(depth * np.interp(depth, [26.0, 34.0], [0.85, 1.1]), 16, 42) / ws
    # only a thin (thoracic) disc can hide in a slice: lumbar discs (~10 mm) stay dark
    thin = np.clip((THICK_DISC_PITCH_MM - pitch0 * ws) / 6.0, 0.0, 1.0)
    scores = {
        "dark": dark + ENERGY_WEIGHT * en,
        "bright": thin * BRIGHT_WEIGHT * _unit(_bright_band(prof, ws)) + (1 - thin) * dark + ENERGY_WEIGHT * en,
    }
    if thick_slices and post_j is not None:
        edge = _pedicle_edge(work, pts, t, post_j, ws)
        for p in scores:
            scores[p] = scores[p] + PEDICLE_WEIGHT * edge
    chains = {p: _chain(scores[p], pitch0, ws) for p in (POLARITIES if polarity == "auto" else (polarity,))}
    if polarity == "auto":
        # the narrow band's contrast is blind to polarity: the reading whose discs sit on the stronger
        # bands wins (half a vertebra off, the discs land on the weaker contrast of the mid-body).
        # On a slice thicker than the disc the band's sign is the question, and its signed contrast is
        # what noise leaves unbiased (noise adds energy at every point alike and pulls the two readings
        # together). A thinner slice resolves each sclerotic endplate as a bright band of its own, which
        # the signed test alone would take for a disc: there "bright" must win both tests, its bands
        # clearly stronger and brighter than the dark reading's. A resolved disc's two endplates are
        # brighter but about as strong as the disc between them (energy ratio 0.99-1.06 on the 1 mm
        # chest under noise), a disc blurred into one band is markedly stronger (1.14-1.57 on the
        # 1.5-2.5 mm scans).
        signed = _band_contrast(prof, ws)

        def strength(h, sign):
            return {p: float(np.median(sign[p] * h[pk])) if len(pk) else 0.0 for p, (pk, _pitch) in chains.items()}

        by_sign = strength(signed, {"dark": -1.0, "bright": 1.0})
        bright = by_sign["bright"] > (1 + POLARITY_MARGIN) * by_sign["dark"]
        if not thick_slices:
            by_energy = strength(en, {"dark": 1.0, "bright": 1.0})
            bright = bright and by_energy["bright"] > (1 + ENERGY_MARGIN) * by_energy["dark"]
        polarity = "bright" if bright else "dark"
    peaks, pitch = chains[polarity]
    return peaks, scores[polarity], pitch, polarity


def pedicle_profile(work: np.ndarray, pts: np.ndarray, t: np.ndarray, post_j: np.ndarray, ws: float) -> np.ndarray:
    """Mean density where the pedicles run, beside the canal just behind the body, along the spine.

    A pedicle leaves the upper half of its body; beside the lower half and the disc below lies the
    intervertebral foramen (fat, nerve). Pedicle and foramen are 10-15 mm tall and bone against
    fat, so this profile rises and falls once per vertebra on any slice thickness: it falls, going
    cranially, just below each disc and rises at mid-body.
    """
    ap = np.array([0.0, 1.0, 0.0])  # posterior
    ap = ap - (t @ ap)[:, None] * t
    ap /= np.linalg.norm(ap, axis=1, keepdims=True)
    lat = np.cross(t, ap)
    offs = [
        (side * lo, a)
        for side in (-1, 1)
        for lo in np.arange(8.0, 16.1, 2.0)  # mm beside the body's midline: canal edge to pedicle's outer wall
        for a in np.arange(2.0, 10.1, 2.0)  # mm behind the body's posterior wall
    ]
    back = pts.copy()
    back[:, 1] = post_j
    coords = np.concatenate([back + (x / ws) * lat + (a / ws) * ap for x, a in offs])
    vals = ndi.map_coordinates(work, coords.T, order=1, mode="nearest").reshape(len(offs), len(pts))
    return vals.mean(0)


def _pedicle_edge(work: np.ndarray, pts: np.ndarray, t: np.ndarray, post_j: np.ndarray, ws: float) -> np.ndarray:
    """Where the pedicle profile falls, going cranially: just below each disc (0-1 scaled)."""
    ped = ndi.gaussian_filter1d(pedicle_profile(work, pts, t, post_j, ws), 2.0 / ws, mode="nearest")
    return _unit(np.maximum(-np.gradient(ped), 0.0))


def _dark_bands(f: np.ndarray, ws: float) -> list[np.ndarray]:
    """Per endplate reach (6 and 8 mm: thin thoracic discs, thick lumbar ones), how far the profile
    dips below the brighter of its two sides' maxima within that reach (a narrow dark band)."""
    f = ndi.gaussian_filter1d(f, 0.5, mode="nearest")
    out = []
    for reach_mm in (6.0, 8.0):
        a = max(2, int(round(reach_mm / ws)))
        up = ndi.maximum_filter1d(f, a + 1, origin=-(a // 2), mode="nearest")
        dn = ndi.maximum_filter1d(f, a + 1, origin=a // 2, mode="nearest")
        out.append(np.minimum(up, dn) - f)
    return out


def _bright_band(f: np.ndarray, ws: float) -> np.ndarray:
    """A narrow band brighter than the profile on both sides within an endplate's reach: the dark
    band of the negated profile."""
    return sum(np.maximum(b, 0) for b in _dark_bands(-f, ws))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(np.percentile(x, 95) - np.percentile(x, 5), 1e-3)


def _chain(score: np.ndarray, pitch: np.ndarray, ws: float) -> tuple[list[int], np.ndarray]:
    """Discs as the most regular chain of the score's peaks: indices and local pitch."""
    scale = max(np.percentile(score, 95) - np.percentile(score, 5), 1e-3)
    cand = _local_maxima(score, 0.05 * scale)
    value = np.clip(score[cand] / max(np.percentile(score[cand], 90), 1e-3), 0, 1.5) if len(cand) else score[cand]
    # within an endplate's reach of the profile's ends one side of the test is missing (the
    # filters repeat the edge value): such a minimum is weaker evidence
    edge = max(2, int(round(6.0 / ws)))
    value = np.where((cand < edge) | (cand > len(score) - 1 - edge), 0.5 * value, value)
    # body proportions vary (and depth can be misread): the period of the profile's own peaks,
    # where it shows one, rescales the depth-based pitch
    pitch = pitch * _comb_ratio(cand, value, pitch, len(score))
    chosen = _best_chain(cand, value, pitch)
    for _ in range(2):  # let the chosen discs correct the pitch (bounded)
        if len(chosen) < 3:
            break
        ratio = np.median(np.diff(chosen) / pitch[(np.array(chosen[:-1]) + np.array(chosen[1:])) // 2])
        pitch = pitch * float(np.clip(ratio, 0.8, 1.25))
        chosen = _best_chain(cand, value, pitch)
    return _fill_gaps(chosen, score, pitch), pitch


def _band_contrast(f: np.ndarray, ws: float, hp_mm: float = 4.0) -> np.ndarray:
    """Signed contrast of narrow bands along the profile (bright > 0, dark < 0)."""
    h = f - ndi.gaussian_filter1d(f, hp_mm / ws, mode="nearest")
    return ndi.gaussian_filter1d(h, 1.0 / ws, mode="nearest")


def _band_energy(f: np.ndarray, ws: float, hp_mm: float = 4.0) -> np.ndarray:
    """Local contrast of narrow bands along the profile, either polarity."""
    h = f - ndi.gaussian_filter1d(f, hp_mm / ws, mode="nearest")
    return np.sqrt(ndi.gaussian_filter1d(h * h, 2.0 / ws, mode="nearest"))


def _comb_ratio(cand: np.ndarray, value: np.ndarray, pitch: np.ndarray, n: int, cost: float = 0.3) -> float:
    """Factor (0.76-1.5) on ``pitch`` whose comb of teeth best fits the candidate discs.

    Teeth step by the (scaled) local pitch from an anchor candidate in both directions; each
    tooth earns its best candidate within 20% of a pitch, minus ``cost``: a comb of half the
    period then pays for empty teeth, one of twice the period misses good discs.
    """
    if len(cand) < 3:
        return 1.0
    best, best_s, best_c0 = -np.inf, 1.0, cand[0]
    near1 = (-np.inf, 1.0, cand[0])
    for s in np.arange(0.76, 1.501, 0.02):
        for c0 in cand:
            total = sum((v - cost for _t, v in _teeth(cand, value, pitch, n, c0, s)), 0.0)
            # the depth-based pitch is a prior: far from it, a comb must fit clearly better
            total -= 0.5 * np.log(s) ** 2 * n / float(np.median(pitch))
            if total > best + 1e-9:
                best, best_s, best_c0 = total, s, c0
            if abs(np.log(s)) <= 0.1 and total > near1[0] + 1e-9:
                near1 = (total, s, c0)
    if best - near1[0] < 0.4:  # no clearly better period than the prior's
        best, best_s, best_c0 = near1
    if best_s * 2 <= 1.6 + 1e-6:
        # a comb at half the period also fits where the mid-bodies read a little dark: then its
        # teeth alternate between strong (discs) and weak (mid-bodies)
        teeth = [[], []]
        for t, v in _teeth(cand, value, pitch, n, best_c0, best_s):
            teeth[t % 2].append(v)
        m = [float(np.median(v)) if v else 0.0 for v in teeth]
        if min(len(teeth[0]), len(teeth[1])) >= 3 and max(m) > 1.6 * min(m):
            best_s *= 2
    return float(best_s)


def _teeth(cand: np.ndarray, value: np.ndarray, pitch: np.ndarray, n: int, c0, s: float) -> list:
    """(tooth number, best candidate value within 20% of a pitch) for each tooth of a comb stepping by
    ``s`` x the local pitch from ``c0``: first towards higher indices, then towards lower ones."""
    out = []
    for direction in (1, -1):
        x, t = (float(c0), 0) if direction > 0 else (float(c0) - s * pitch[int(c0)], 1)
        while 0 <= x <= n - 1:
            p = s * pitch[int(round(x))]
            near = np.abs(cand - x) <= 0.2 * p
            out.append((t, value[near].max() if near.any() else 0.0))
            x += direction * p
            t += 1
    return out


def _local_maxima(x: np.ndarray, floor: float) -> np.ndarray:
    """Indices of strict-left / non-strict-right local maxima above ``floor`` (scipy.signal is slow to import)."""
    if len(x) < 3:
        return np.zeros(0, int)
    m = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > floor)
    return np.nonzero(m)[0] + 1


def _best_chain(cand: np.ndarray, value: np.ndarray, pitch: np.ndarray, lam: float = 5.0) -> list[int]:
    """Subset of candidate minima maximising their strength minus a penalty on irregular spacing."""
    n = len(cand)
    if n == 0:
        return []
    best = value.astype(float).copy()
    prev = -np.ones(n, int)
    for b in range(n):
        for a in range(b):
            r = (cand[b] - cand[a]) / pitch[(cand[a] + cand[b]) // 2]
            if r < 0.62:
                continue
            # a missed disc (r ~ 2) costs less than a spurious split, it is filled in afterwards
            if r <= 1.45:
                pen = lam * (r - 1) ** 2
            else:
                m = round(r)
                pen = lam * (0.2 + 0.5 * (r - m) ** 2 * m + 0.4 * (m - 1))
            v = best[a] + value[b] - pen
            if v > best[b]:
                best[b], prev[b] = v, a
    b = int(np.argmax(best))
    out = []
    while b >= 0:
        out.append(int(cand[b]))
        b = prev[b]
    return out[::-1]


def _fill_gaps(peaks: list[int], score: np.ndarray, pitch: np.ndarray) -> list[int]:
    out = list(peaks)

    for a, b in zip(peaks[:-1], peaks[1:], strict=False):
        p = pitch[(a + b) // 2]
        if b - a > 1.6 * p:
            nfill = max(1, int(round((b - a) / p)) - 1)
            for m in range(1, nfill + 1):
                c = a + (b - a) * m / (nfill + 1)
                lo, hi = max(a + 1, int(c - 0.25 * p)), min(b, int(c + 0.25 * p) + 1)
                out.append(lo + int(np.argmax(score[lo:hi])))
    return sorted(out)


def refine_plane(
    work: np.ndarray, p: np.ndarray, n: np.ndarray, radius_vox: float, ws: float
) -> tuple[np.ndarray, np.ndarray]:
    """Tilt (±20°) and shift (±3 mm) the disc plane to where the disc reads darkest."""
    t = n / np.linalg.norm(n)
    lat = np.array([0.0, 0.0, 1.0])
    u = lat - (t @ lat) * t
    u /= np.linalg.norm(u)
    v = np.cross(t, u)
    best = (np.inf, p, t)
    shifts = np.arange(-3, 3.01, 1.0) / ws
    cands_n, cands_p = [], []
    for a in np.radians(np.arange(-20, 21, 5)):
        for b in np.radians(np.arange(-10, 11, 5)):
            nn = t * np.cos(a) * np.cos(b) + v * np.sin(a) * np.cos(b) + u * np.sin(b)
            nn /= np.linalg.norm(nn)
            for s in shifts:
                cands_n.append(nn)
                cands_p.append(p + s * t)
    cands_n = np.array(cands_n)
    cands_p = np.array(cands_p)
    vals = disk_means(work, cands_p, cands_n, radius_vox)
    m = int(np.argmin(vals))
    best = (vals[m], cands_p[m], cands_n[m])
    return best[1], best[2]
