"""Geometry of the digital chest / upper-abdomen phantom: a material map plus vertebra labelmaps.

All lengths are mm in LPS (x -> patient left, y -> posterior, z -> superior). Soft tissues are
built slice by slice from 2D shapes whose parameters vary smoothly with z; bones are built in 3D
inside a cropped box around each structure, in the vertebra's own tilted frame
(u = left, v = posterior, w = along the spine, upwards). Arrays are indexed [k, j, i].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from OsteoAIBaseLib import levels as lv
from OsteoAIBaseLib.errors import InputError

from .params import TISSUES, PhantomParams

T = TISSUES

# The modelled column, cranial -> caudal; index = row of the size tables below.
SEQ = ["C7"] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
# Adult sizes (mm) scaled to a small adult so that T1-L2 fits a 300 mm chest/abdomen scan:
# body height, disc below, body half-width / half-depth, canal half-width / half-depth.
_H = [11.0, 11.5, 12.0, 12.6, 13.2, 13.8, 14.4, 15.0, 15.6, 16.2, 16.8, 17.4, 18.0, 19.0, 20.0, 21.0, 21.5, 21.0]
_DISC = [3.5, 3.0, 3.0, 3.0, 3.0, 3.2, 3.3, 3.4, 3.5, 3.6, 3.8, 4.2, 5.0, 6.5, 7.5, 8.5, 9.0, 9.0]
_A = [11.0, 12.5, 13.0, 13.5, 14.0, 14.6, 15.2, 15.8, 16.4, 17.0, 17.8, 18.6, 19.4, 20.5, 21.5, 22.5, 23.5, 24.5]
_B = [8.0, 8.0, 8.5, 9.2, 10.0, 10.7, 11.4, 12.0, 12.5, 13.0, 13.5, 14.0, 14.5, 15.0, 15.5, 16.0, 16.5, 17.0]
_CW = [11.0, 8.5, 8.0, 7.6, 7.4, 7.3, 7.3, 7.4, 7.5, 7.7, 8.0, 8.5, 9.0, 10.0, 10.5, 11.0, 11.5, 12.0]
_CD = [7.0, 7.0, 6.8, 6.6, 6.6, 6.6, 6.6, 6.6, 6.7, 6.8, 7.0, 7.2, 7.5, 8.0, 8.0, 8.0, 8.0, 8.0]
# Sagittal tangent angle (deg, + = running posterior going down): kyphosis apex ~T7, lordosis ~L3.
_THETA = [8.0, 16.0, 16.0, 14.0, 11.0, 7.0, 3.0, 0.0, -4.0, -8.0, -11.0, -13.0, -13.0, -11.0, -7.0, 0.0, 8.0, 14.0]
# Body outline: half-width, antero-posterior depth, back skin behind the vertebral body centre.
_AX = [
    118.0,
    122.0,
    130.0,
    137.0,
    143.0,
    147.0,
    150.0,
    151.0,
    151.0,
    150.0,
    149.0,
    148.0,
    147.0,
    146.0,
    146.0,
    147.0,
    149.0,
    151.0,
]
_AP = [
    160.0,
    165.0,
    175.0,
    185.0,
    195.0,
    202.0,
    206.0,
    210.0,
    212.0,
    213.0,
    214.0,
    214.0,
    214.0,
    213.0,
    212.0,
    210.0,
    208.0,
    206.0,
]
_DPOST = [66.0, 68.0, 69.0, 70.0, 70.0, 71.0, 71.0, 72.0, 72.0, 73.0, 74.0, 76.0, 78.0, 81.0, 84.0, 86.0, 88.0, 90.0]
_RIB_END_DEG = {1: 35, 2: 28, 3: 26, 4: 26, 5: 27, 6: 28, 7: 30, 8: 40, 9: 50, 10: 62, 11: 85, 12: 108, 13: 120}
_LEN_SCALE = 1.06  # T1-L2 then spans ~275 mm: with the margins the default scan is 300 x 1 mm
MARGIN_MM = 10.0


@dataclass
class LevelGeom:
    name: str
    label: int
    idx: int
    center: np.ndarray  # (x, y, z) mm
    theta: float  # rad
    h: float
    a: float
    b: float
    cw: float
    cd: float
    t_cortex: float
    t_endplate: float
    fracture: float = 0.0
    partial: bool = False  # neighbour of the requested range, in the margin only
    rib: int = 0  # rib number carried by this vertebra (0 = none)
    box: tuple | None = None  # (k0, k1, j0, j1, i0, i1) of the vertebra in the grid

    def frame(self):
        c, s = math.cos(self.theta), math.sin(self.theta)
        return c, s

    def heights(self) -> dict[str, float]:
        """Anterior / middle / posterior body heights (mm) measured along the local axis."""
        out = {}
        for key, v in (("anterior", -0.85 * self.b), ("middle", 0.0), ("posterior", 0.7 * self.b)):
            out[key] = round(float(self.h - _fracture_loss(v, self)), 2)
        return out


def _fracture_loss(v, g: LevelGeom):
    """Height lost by the superior endplate at antero-posterior position v: a wedge, so that the
    anterior height (measured at v = -0.85 b) is (1 - ratio) times the posterior one (v = 0.7 b)."""
    if g.fracture <= 0:
        return 0.0 * v
    ramp = np.clip((0.7 * g.b - v) / (1.55 * g.b), 0.0, 1.0)
    return g.fracture * g.h * ramp


@dataclass
class Grid:
    shape: tuple[int, int, int]  # (nk, nj, ni)
    spacing: tuple[float, float, float]  # (si, sj, sk)
    origin: tuple[float, float, float]

    def x(self):
        return self.origin[0] + np.arange(self.shape[2], dtype=np.float32) * self.spacing[0]

    def y(self):
        return self.origin[1] + np.arange(self.shape[1], dtype=np.float32) * self.spacing[1]

    def z(self):
        return self.origin[2] + np.arange(self.shape[0], dtype=np.float32) * self.spacing[2]

    def box(self, lo, hi):
        """Index box (k0, k1, j0, j1, i0, i1) covering the mm box lo..hi (x, y, z), clipped; None if empty."""
        out = []
        for ax, n in ((2, self.shape[0]), (1, self.shape[1]), (0, self.shape[2])):
            a = int(math.floor((lo[ax] - self.origin[ax]) / self.spacing[ax]))
            b = int(math.ceil((hi[ax] - self.origin[ax]) / self.spacing[ax])) + 1
            a, b = max(a, 0), min(b, n)
            if a >= b:
                return None
            out += [a, b]
        return tuple(out)

    def coords(self, box):
        k0, k1, j0, j1, i0, i1 = box
        z = (self.origin[2] + np.arange(k0, k1, dtype=np.float32) * self.spacing[2])[:, None, None]
        y = (self.origin[1] + np.arange(j0, j1, dtype=np.float32) * self.spacing[1])[None, :, None]
        x = (self.origin[0] + np.arange(i0, i1, dtype=np.float32) * self.spacing[0])[None, None, :]
        return x, y, z


@dataclass
class Anatomy:
    grid: Grid
    tissues: np.ndarray
    vertebrae: np.ndarray
    bodies: np.ndarray
    levels: list[LevelGeom]
    outline: dict = field(default_factory=dict)  # per-slice body outline (for cupping)
    rib_levels: list[str] = field(default_factory=list)


def _requested(params: PhantomParams) -> list[int]:
    try:
        ids = lv.parse_range(params.levels)
    except ValueError as e:
        raise InputError(str(e)) from None
    names = [lv.name(i) for i in ids]
    bad = [n for n in names if n not in SEQ[1:]]
    if bad or not names:
        raise InputError(f"phantom levels must lie within T1-L5, got {params.levels!r}")
    idx = sorted(SEQ.index(n) for n in names)
    if idx != list(range(idx[0], idx[-1] + 1)):
        raise InputError(f"phantom levels must be contiguous, got {params.levels!r}")
    return idx


def _layout(rng: np.random.Generator) -> list[dict]:
    """Place every vertebra of SEQ along a kyphotic/lordotic curve, walking down from C7."""
    out, p = [], np.array([0.0, 0.0])  # (y, z) of the current top endplate centre
    jit = 1.0 + rng.normal(0.0, 0.015, len(SEQ))
    for i in range(len(SEQ)):
        th = math.radians(_THETA[i])
        down = np.array([math.sin(th), -math.cos(th)])
        h = _H[i] * _LEN_SCALE * jit[i]
        c = p + down * h / 2
        out.append({"idx": i, "y": c[0], "z": c[1], "theta": th, "h": h})
        p = p + down * (h + _DISC[i] * _LEN_SCALE)
    return out


def _slice_profile(zs: np.ndarray, lay: list[dict], key_vals) -> np.ndarray:
    zc = np.array([d["z"] for d in lay])[::-1]
    return np.interp(zs, zc, np.asarray(key_vals, dtype=float)[::-1])


def build_anatomy(params: PhantomParams, rng: np.random.Generator) -> Anatomy:
    si, sj, sk = (float(s) for s in params.spacing)
    if min(si, sj, sk) <= 0 or params.matrix < 32:
        raise InputError("phantom spacing must be positive and matrix >= 32")
    req = _requested(params)
    lay = _layout(rng)
    first, last = req[0], req[-1]
    top = lay[first]["z"] + lay[first]["h"] / 2 + MARGIN_MM
    bottom = lay[last]["z"] - lay[last]["h"] / 2 - MARGIN_MM
    if params.slices is None:
        nk = int(math.ceil((top - bottom) / sk / 10.0) * 10)
    else:
        nk = int(params.slices)
        if nk < 4:
            raise InputError("phantom needs at least 4 slices")
    zmid = (top + bottom) / 2
    ni = nj = int(params.matrix)
    # z = 0 at the centre of the scan; y so that the body outline is centred in the field of view
    for d in lay:
        d["z"] -= zmid
    zs = (np.arange(nk) - (nk - 1) / 2) * sk
    y_vb = _slice_profile(zs, lay, [d["y"] for d in lay])
    dpost = _slice_profile(zs, lay, _DPOST)
    ap = _slice_profile(zs, lay, _AP)
    y_shift = float(np.mean(y_vb + dpost - ap / 2))
    for d in lay:
        d["y"] -= y_shift
    origin = (-(ni - 1) / 2 * si, -(nj - 1) / 2 * sj, float(zs[0]))
    grid = Grid((nk, nj, ni), (si, sj, sk), origin)

    fov = min(ni * si, nj * sj)
    body_scale = float(np.clip(0.94 * fov / (2 * max(_AX)), 0.8, 1.0))
    if params.body_scale is not None:
        body_scale = float(params.body_scale)  # habitus asked for: the caller sizes the field of view
    fat_mm = float(rng.uniform(10.0, 22.0))
    if params.fat_mm is not None:
        fat_mm = float(params.fat_mm)
    fractures = {k.strip().upper(): float(v) for k, v in (params.fracture or {}).items()}
    for name, ratio in fractures.items():
        if name not in SEQ[1:]:
            raise InputError(f"fracture level {name!r} must be within T1-L5")
        if not 0.0 <= ratio < 0.8:
            raise InputError(f"fracture height-loss ratio for {name} must be in [0, 0.8), got {ratio}")

    rib_last = {11: 11, 12: 12, 13: 13}.get(int(params.rib_pairs))
    if rib_last is None:
        raise InputError(f"rib_pairs must be 11, 12 or 13, got {params.rib_pairs}")
    geoms: list[LevelGeom] = []
    for i in range(max(first - 1, 0), min(last + 1, len(SEQ) - 1) + 1):
        d = lay[i]
        name = SEQ[i]
        geoms.append(
            LevelGeom(
                name=name,
                label=lv.label(name),
                idx=i,
                center=np.array([0.0, d["y"], d["z"]]),
                theta=d["theta"],
                h=d["h"],
                a=_A[i] * (1 + rng.normal(0, 0.02)),
                b=_B[i] * (1 + rng.normal(0, 0.02)),
                cw=_CW[i],
                cd=_CD[i],
                t_cortex=float(rng.uniform(0.7, 1.3)),
                t_endplate=float(rng.uniform(0.6, 1.0)),
                fracture=fractures.get(name, 0.0),
                partial=not (first <= i <= last),
                rib=i if 1 <= i <= rib_last else 0,
            )
        )

    tissues = np.zeros(grid.shape, np.uint8)
    vertebrae = np.zeros(grid.shape, np.int16)
    bodies = np.zeros(grid.shape, np.int16)
    outline = _soft_tissues(grid, lay, tissues, params, body_scale, fat_mm)
    for g in geoms:
        if g.rib:
            _rib(grid, g, tissues, outline)
    for g0, g1 in zip(geoms[:-1], geoms[1:], strict=True):
        _disc(grid, g0, g1, tissues)
    for g in geoms:
        _vertebra(grid, g, tissues, vertebrae, bodies)
    rib_levels = [g.name for g in geoms if g.rib]
    return Anatomy(grid, tissues, vertebrae, bodies, geoms, outline, rib_levels)


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _win(xs, ys, cx, cy, rx, ry):
    """Index window of the 1D coordinate vectors xs (columns), ys (rows) around an ellipse."""
    i0, i1 = np.searchsorted(xs, [cx - rx, cx + rx])
    j0, j1 = np.searchsorted(ys, [cy - ry, cy + ry])
    return slice(int(j0), int(j1) + 1), slice(int(i0), int(i1) + 1)


def _paint(sl, xs, ys, cx, cy, rx, ry, value, cond=None):
    """Paint an axis-aligned ellipse into the 2D slice ``sl`` (optionally only where ``cond``)."""
    if rx <= 0 or ry <= 0:
        return
    js, is_ = _win(xs, ys, cx, cy, rx, ry)
    m = _ellipse(xs[None, is_], ys[js, None], cx, cy, rx, ry) <= 1.0
    if cond is not None:
        m &= cond[js, is_]
    sl[js, is_][m] = value


def _paint_capsule2d(sl, xs, ys, p0, p1, r, value):
    """Paint a 2D capsule (segment p0-p1, radius r) into the slice ``sl``."""
    js, is_ = _win(
        xs, ys, (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2, abs(p1[0] - p0[0]) / 2 + r, abs(p1[1] - p0[1]) / 2 + r
    )
    x, y = xs[is_][None, :], ys[js][:, None]
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * dx + (y - p0[1]) * dy) / (dx * dx + dy * dy or 1e-9), 0.0, 1.0)
    m = (x - p0[0] - t * dx) ** 2 + (y - p0[1] - t * dy) ** 2 <= r * r
    sl[js, is_][m] = value


def _soft_tissues(grid: Grid, lay, tissues, params: PhantomParams, body_scale: float, fat_mm: float) -> dict:
    nk = grid.shape[0]
    zs = grid.z()
    prof = {
        k: _slice_profile(zs, lay, v)
        for k, v in (
            ("y_vb", [d["y"] for d in lay]),
            ("ax", _AX),
            ("ap", _AP),
            ("dpost", _DPOST),
            ("a", _A),
            ("b", _B),
            ("cw", _CW),
            ("cd", _CD),
            ("theta", [d["theta"] for d in lay]),
        )
    }
    zlev = {SEQ[d["idx"]]: float(d["z"]) for d in lay}
    hlev = {SEQ[d["idx"]]: float(d["h"]) for d in lay}
    xall, yall = grid.x(), grid.y()
    z_dome_r = zlev["T10"] + 0.2 * hlev["T10"]
    z_dome_l = zlev["T10"] - 0.6 * hlev["T10"]
    z_cord_end = (zlev["L1"] + zlev["L2"]) / 2
    z_trachea_end = zlev["T5"]
    z_heart, z_liver, z_kidney = zlev["T8"], zlev["T11"], zlev["L1"] + 8
    out = {"y_mid": np.zeros(nk), "ax": np.zeros(nk), "ay": np.zeros(nk), "inner": {}}
    f32 = np.float32
    for k in range(nk):
        z = float(zs[k])
        y_vb, b, a = (float(prof[n][k]) for n in ("y_vb", "b", "a"))
        cw, cd, theta = (float(prof[n][k]) for n in ("cw", "cd", "theta"))
        ax = float(prof["ax"][k]) * body_scale
        ay = float(prof["ap"][k]) / 2 * body_scale
        y_mid = y_vb + float(prof["dpost"][k]) - ay
        out["y_mid"][k], out["ax"][k], out["ay"][k] = y_mid, ax, ay
        reff = math.sqrt(ax * ay)
        js, is_ = _win(xall, yall, 0.0, y_mid, ax + 1, ay + 1)
        xs, ys = xall[is_], yall[js]
        x, y = xs[None, :], ys[:, None]
        sl = tissues[k][js, is_]
        # superellipse outline: flatter back and flanks than an ellipse
        # r**2.4 of the outline's normalised radius; the 1D factors keep the 2D work to one add
        r24 = np.abs(x * f32(1 / ax)) ** f32(2.4) + np.abs((y - f32(y_mid)) * f32(1 / ay)) ** f32(2.4)
        body = r24 <= 1.0
        sl[body] = T["skin"]
        sl[r24 <= (1.0 - 2.0 / reff) ** 2.4] = T["fat"]
        r_mus = 1.0 - (2.0 + fat_mm) / reff
        r_cav = r_mus - 11.0 / reff
        sl[r24 <= r_mus**2.4] = T["muscle"]
        cav = r24 <= r_cav**2.4
        out["inner"][k] = (r_cav, r_mus)
        sl[cav] = T["fat"]  # mediastinal / visceral fat unless something else is painted
        # diaphragm: lungs above a dome, lower laterally and posteriorly (recesses)
        z_dome = np.where(x < 0, f32(z_dome_r), f32(z_dome_l))
        z_dia = z_dome - f32(30.0) * (x * f32(1 / ax)) ** 2 - f32(30.0) * np.clip((y - f32(y_mid)) / f32(ay), 0, 1)
        y_spine_front = y_vb - b - 6.0
        cyp = y_vb + 0.8 * b + 2 * cd + 16.0
        paraspinal_r = 20.0 + 6.0 * min(max((zlev["T12"] - z) / 60.0, 0.0), 1.0)
        if z > float(z_dia.min()):
            # the column and its posterior gutters, rounded like the pleura wrapping the bodies
            spine_block = (_ellipse(x, y, 0.0, y_vb + 0.3 * b, a + 15.0, 1.3 * b + 8.0) <= 1.0) | (
                (np.abs(x) < a + 6.0) & (y > y_vb)
            )
            paraspinal = _ellipse(np.abs(x), y, cw + 18.0, cyp, paraspinal_r + 4.0, paraspinal_r) <= 1.0
            med_w = 16.0 + 14.0 * np.clip((y_spine_front - y) / 60.0, 0, 1)
            mediastinum = (np.abs(x - 6.0) < med_w) & (y < y_spine_front + 4.0)
            lung = cav & (z > z_dia) & ~spine_block & ~mediastinum & ~paraspinal
            sl[lung] = T["lung"]
            hz = (z - z_heart) / 55.0
            if abs(hz) < 1:  # heart (blood pool + myocardium) in the anterior lower chest
                s = math.sqrt(1 - hz * hz)
                _paint(sl, xs, ys, 18.0, y_mid - 0.35 * ay, 58.0 * s, 45.0 * s, T["blood"], cav & (z > z_dia - 8))
        abdomen = cav & (z <= z_dia)
        if abdomen.any():
            # solid organs: liver (right), spleen (left), kidneys; stomach with a gas cap
            for cx, cy, cz, sx, sy, sz, tid in (
                (-55.0, y_mid - 5.0, z_liver, 85.0, 0.8 * ay, 75.0, T["organ"]),
                (80.0, y_vb, z_liver + 5, 30.0, 40.0, 45.0, T["organ"]),
                (-62.0, y_vb + 8.0, z_kidney, 26.0, 30.0, 50.0, T["organ"]),
                (62.0, y_vb + 8.0, z_kidney + 10, 26.0, 30.0, 50.0, T["organ"]),
                (45.0, y_mid - 0.45 * ay, z_liver - 5, 45.0, 35.0, 45.0, T["muscle"]),
            ):
                hz = (z - cz) / sz
                if abs(hz) < 1:
                    s = math.sqrt(1 - hz * hz)
                    _paint(sl, xs, ys, cx, cy, sx * s, sy * s, tid, abdomen)
                    if tid == T["muscle"] and hz > 0.45:
                        _paint(sl, xs, ys, cx, cy, sx * s * 0.8, sy * s * 0.8, T["airway"], abdomen)
        ps = min(max((zlev["T12"] - z) / 80.0, 0.0), 1.0)
        if ps > 0:  # psoas from T12 down, beside the vertebral bodies
            rp = 6.0 + 16.0 * ps
            for sgn in (-1.0, 1.0):
                _paint(sl, xs, ys, sgn * (a + rp * 0.8), y_vb + 2.0, rp, rp * 0.9, T["muscle"], cav)
        for sgn in (-1.0, 1.0):
            _paint(sl, xs, ys, sgn * (cw + 18.0), cyp, paraspinal_r + 4.0, paraspinal_r, T["muscle"], body)
        if z > z_dome_l - 20:  # oesophagus
            _paint(sl, xs, ys, 6.0, y_spine_front - 4.0, 7.0, 6.0, T["muscle"])
        if z > z_trachea_end:
            _paint(sl, xs, ys, 0.0, y_spine_front - 20.0, 10.0, 9.0, T["muscle"])
            _paint(sl, xs, ys, 0.0, y_spine_front - 20.0, 8.0, 7.0, T["airway"])
        z_arch = zlev["T4"] + 0.3 * hlev["T4"]
        if z < z_arch:  # descending aorta: left-anterolateral in the chest, in front of the spine below
            w_abd = min(max((z_dome_l - z) / 40.0, 0.0), 1.0)
            rao = 12.0 - 2.0 * w_abd
            cx = (1 - w_abd) * (a * 0.6 + rao) + w_abd * (a * 0.25)
            cy = (1 - w_abd) * (y_vb - b * 0.6 - rao * 0.5) + w_abd * (y_vb - b - rao - 3.0)
            _paint(sl, xs, ys, cx, cy, rao, rao, T["blood"])
        # ascending aorta from the heart up to the arch, and the arch running back to the left
        x_asc, y_asc, r_asc = -10.0, y_mid - 0.32 * ay, 14.0
        if z_heart < z < z_arch:
            _paint(sl, xs, ys, x_asc, y_asc, r_asc, r_asc, T["blood"])
        dz = z - z_arch
        if abs(dz) < 12.0:
            r = math.sqrt(144.0 - dz * dz)
            _paint_capsule2d(sl, xs, ys, (x_asc, y_asc), (a * 0.6 + 12.0, y_vb - b * 0.6 - 6.0), r, T["blood"])
        # spinal canal (CSF) and cord, following the posterior wall of the vertebral bodies
        ccy = y_vb + (0.8 * b + cd) / math.cos(theta)
        _paint(sl, xs, ys, 0.0, ccy, cw, cd, T["csf"])
        if z > z_cord_end:
            _paint(sl, xs, ys, 0.0, ccy, 4.5, 3.8, T["cord"])
    return out


def _capsule(grid: Grid, u, v, w, q, p0, p1, r, zs, g: LevelGeom, box):
    """Lower ``q`` to the normalised distance (1 = surface) to the capsule p0-p1 (local coords,
    radius r, w lengths divided by zs), computed only in the capsule's own sub-box."""
    c, s = g.frame()
    pts = np.array([p0, p1], float)
    gy = g.center[1] + pts[:, 1] * c - pts[:, 2] * s
    gz = g.center[2] + pts[:, 1] * s + pts[:, 2] * c
    pad = r * max(zs, 1.0) + 1.0
    k0, _, j0, _, i0, _ = box
    sub = []
    for lo, hi, org, sp, off, n in (
        (gz.min() - pad, gz.max() + pad, grid.origin[2], grid.spacing[2], k0, u.shape[0]),
        (gy.min() - pad, gy.max() + pad, grid.origin[1], grid.spacing[1], j0, u.shape[1]),
        (pts[:, 0].min() - pad, pts[:, 0].max() + pad, grid.origin[0], grid.spacing[0], i0, u.shape[2]),
    ):
        a = max(int(math.floor((lo - org) / sp)) - off, 0)
        b = min(int(math.ceil((hi - org) / sp)) + 1 - off, n)
        if a >= b:
            return
        sub.append(slice(a, b))
    sub = tuple(sub)
    uu, vv, ww = u[sub], v[sub], w[sub]
    d = (pts[1] - pts[0]) * np.array([1.0, 1.0, 1.0 / zs])
    dd = float(d @ d) or 1e-9
    f = np.float32
    qx, qy, qz = uu - f(pts[0, 0]), vv - f(pts[0, 1]), (ww - f(pts[0, 2])) * f(1.0 / zs)
    t = np.clip((qx * f(d[0]) + qy * f(d[1]) + qz * f(d[2])) * f(1.0 / dd), 0.0, 1.0)
    ex, ey, ez = qx - t * f(d[0]), qy - t * f(d[1]), qz - t * f(d[2])
    np.minimum(q[sub], np.sqrt(ex * ex + ey * ey + ez * ez) * f(1.0 / r), out=q[sub])


def _local(grid: Grid, g: LevelGeom, box):
    x, y, z = grid.coords(box)
    c, s = g.frame()
    f = np.float32
    dy, dz = y - f(g.center[1]), z - f(g.center[2])
    shape = (box[1] - box[0], box[3] - box[2], box[5] - box[4])
    u = np.broadcast_to(x - f(g.center[0]), shape)
    v = np.broadcast_to(dy * f(c) + dz * f(s), shape)
    w = np.broadcast_to(-dy * f(s) + dz * f(c), shape)
    return u, v, w


def _disc(grid: Grid, g0: LevelGeom, g1: LevelGeom, tissues):
    """Intervertebral disc between g0 (upper) and g1, filling any fracture gap of g1."""
    top = g0.center[1:] + np.array([math.sin(g0.theta), -math.cos(g0.theta)]) * g0.h / 2
    bot = g1.center[1:] - np.array([math.sin(g1.theta), -math.cos(g1.theta)]) * g1.h / 2
    th = (g0.theta + g1.theta) / 2
    a, b = 0.96 * (g0.a + g1.a) / 2, 0.96 * (g0.b + g1.b) / 2
    gap = g1.fracture * g1.h
    mid = (top + bot) / 2
    half = float(np.linalg.norm(top - bot)) / 2 + 1.5
    pad = half + gap + 3
    box = grid.box((-a - 3, mid[0] - pad - b, mid[1] - pad - b), (a + 3, mid[0] + pad + b, mid[1] + pad + b))
    if box is None:
        return
    gd = LevelGeom("disc", 0, 0, np.array([0.0, mid[0], mid[1]]), th, 0, a, b, 0, 0, 0, 0)
    u, v, w = _local(grid, gd, box)
    m = (_ellipse(u, v, 0.0, 0.0, a, b) <= 1.0) & (w <= half) & (w >= -half - gap)
    tissues[box[0] : box[1], box[2] : box[3], box[4] : box[5]][m] = T["disc"]


def _body_parts(g: LevelGeom, u, v, w):
    """Body membership of points in local coordinates: (body, cortex, vein) boolean arrays."""
    a, b, h = g.a, g.b, g.h
    aw = a * (0.93 + 0.07 * (2 * w / h) ** 2)  # waisted
    bv = np.where(v < 0, np.float32(b), np.float32(0.8 * b))  # flatter posterior wall
    rn = np.sqrt((u / aw) ** 2 + (v / bv) ** 2)
    top = h / 2 - _fracture_loss(v, g)
    body = (rn <= 1.0) & (w >= -h / 2) & (w <= top)
    cortex = body & (
        ((1.0 - rn) * np.minimum(aw, bv) < g.t_cortex) | (top - w < g.t_endplate) | (w + h / 2 < g.t_endplate)
    )
    # basivertebral vein: a channel entering the posterior wall at mid-height, ending in a small lake
    vein = body & (np.abs(u) < 1.8) & (np.abs(w) < 1.6) & (v > 0.3 * b)
    vein |= body & (_ellipse(u, v, 0.0, 0.35 * b, 3.0, 2.2) <= 1.0) & (np.abs(w) < 1.8)
    return body, cortex, vein


def _local_box(grid: Grid, g: LevelGeom, lo, hi):
    """Grid box covering the local-coordinate box lo..hi (u, v, w) of vertebra g."""
    c, s = g.frame()
    pts = np.array([[uu, vv, ww] for uu in (lo[0], hi[0]) for vv in (lo[1], hi[1]) for ww in (lo[2], hi[2])])
    gx = g.center[0] + pts[:, 0]
    gy = g.center[1] + pts[:, 1] * c - pts[:, 2] * s
    gz = g.center[2] + pts[:, 1] * s + pts[:, 2] * c
    return grid.box((gx.min(), gy.min(), gz.min()), (gx.max(), gy.max(), gz.max()))


def _vertebra(grid: Grid, g: LevelGeom, tissues, vertebrae, bodies):
    a, b, h, cw, cd = g.a, g.b, g.h, g.cw, g.cd
    thoracic = g.idx <= 12
    # --- body, in its own small box
    bbox = _local_box(grid, g, (-a - 1, -b - 1, -h / 2 - 1), (a + 1, 0.8 * b + 1, h / 2 + 1))
    if bbox is not None:
        u, v, w = _local(grid, g, bbox)
        body, cortex, vein = _body_parts(g, u, v, w)
        sl = (slice(bbox[0], bbox[1]), slice(bbox[2], bbox[3]), slice(bbox[4], bbox[5]))
        t = tissues[sl]
        t[body] = T["trabecular"]
        t[cortex] = T["cortical"]
        t[vein] = T["basivertebral_vein"]
        vertebrae[sl][body] = g.label
        bodies[sl][body] = g.label
        g.box = bbox
    # --- posterior arch: pedicles, articular pillars, laminae, spinous and transverse processes
    reach = max(a, cw + 32.0) + 6
    lo = g.center + np.array([-reach, -b - 24, -h / 2 - 40])
    hi = g.center + np.array([reach, 0.8 * b + 2 * cd + 50, h / 2 + 25])
    box = grid.box(lo, hi)
    if box is None:
        return
    if g.box is None:
        g.box = box
    else:  # the union, so that per-level lookups cover the whole vertebra
        g.box = tuple(min(p, q) if n % 2 == 0 else max(p, q) for n, (p, q) in enumerate(zip(g.box, box, strict=True)))
    u, v, w = _local(grid, g, box)
    vc = 0.8 * b + cd  # canal centre
    rp = 3.4 if thoracic else 4.4
    xp = cw + rp * 0.6
    ls = 30.0 if thoracic else 26.0
    alpha = math.radians(50.0 if 4 <= g.idx <= 9 else (35.0 if thoracic else 8.0))
    lt, dt = (24.0, 11.0) if thoracic else (30.0, 1.0)
    if g.idx == 0:
        ls, alpha = 38.0, math.radians(20.0)
    q = np.full(u.shape, np.inf, np.float32)
    sp0 = (0.0, vc + cd + 2.5, 0.0)
    caps = [(sp0, (0.0, sp0[1] + ls * math.cos(alpha), -ls * math.sin(alpha)), 2.6, 2.0)]  # spinous
    for sgn in (-1.0, 1.0):
        caps += [
            ((sgn * xp, 0.5 * b, 0.1 * h), (sgn * xp, vc + 0.3 * cd, 0.1 * h), rp, 2.0),  # pedicle
            ((sgn * xp, vc + 0.4 * cd, -0.45 * h), (sgn * xp, vc + 0.4 * cd, 0.6 * h), 4.0, 1.0),  # facets
            ((sgn * xp, vc + 0.3 * cd, 0.0), sp0, 2.6, 2.2),  # lamina
            ((sgn * (cw + 2.0), vc, 0.15 * h), (sgn * (cw + lt), vc + dt, 0.15 * h), 4.0 if thoracic else 3.2, 1.3),
        ]
    for p0, p1, r, zs in caps:
        _capsule(grid, u, v, w, q, p0, p1, r, zs, g, box)
    kk, jj, ii = np.nonzero(q <= 1.0)
    uu, vv, ww, qq = u[kk, jj, ii], v[kk, jj, ii], w[kk, jj, ii], q[kk, jj, ii]
    in_body = _body_parts(g, uu, vv, ww)[0]
    keep = ~(_ellipse(uu, vv, 0.0, vc, cw, cd) <= 1.0) & ~in_body
    kk, jj, ii, qq = kk[keep] + box[0], jj[keep] + box[2], ii[keep] + box[4], qq[keep]
    cort = qq > 1.0 - 1.1 / rp
    tissues[kk, jj, ii] = np.where(cort, T["cortical"], T["arch"]).astype(np.uint8)
    vertebrae[kk, jj, ii] = g.label


def _rib(grid: Grid, g: LevelGeom, tissues, outline):
    """One rib pair: an elliptic arc around the chest from beside the transverse process tip, sloping down."""
    zh = g.center[2] + 0.25 * g.h
    k_head = int(np.clip(round((zh - grid.origin[2]) / grid.spacing[2]), 0, grid.shape[0] - 1))
    r_cav, r_mus = outline["inner"][k_head]
    ax, ay, y_mid = outline["ax"][k_head], outline["ay"][k_head], outline["y_mid"][k_head]
    lt, dt = 24.0, 11.0  # thoracic transverse process (see _vertebra)
    vc = 0.8 * g.b + g.cd
    x_tp = g.cw + lt
    y_tp = g.center[1] + vc + dt
    rx = ax * (r_cav + r_mus) / 2 - 2.0
    y_post = y_tp + 9.0
    y_ant = y_mid - ay * (r_cav + r_mus) / 2 + 2.0
    ry = (y_post - y_ant) / 2
    y_rc = (y_post + y_ant) / 2
    ra, rb = 2.6, 5.0
    drop = 14.0 if g.rib == 1 else 32.0
    phi_s = math.pi - math.asin(min(0.95, x_tp / rx))
    phi_e = math.radians(_RIB_END_DEG[g.rib])
    x = grid.x()[None, :]
    y = grid.y()[:, None]
    xn, yn = np.abs(x) / rx, (y - y_rc) / ry
    rn = np.sqrt(xn**2 + yn**2)
    d = (rn - 1.0) * math.sqrt(rx * ry)
    phi = np.arctan2(xn, -yn)
    ring = (np.abs(d) <= ra) & (phi >= phi_e) & (phi <= phi_s)
    jj, ii = np.nonzero(ring)
    if jj.size == 0:
        return
    d = d[jj, ii]
    s = (phi_s - phi[jj, ii]) / (phi_s - phi_e)
    zc = zh - drop * s**1.3
    half = rb * np.sqrt(np.clip(1 - (d / ra) ** 2, 0, 1))
    k_lo = np.floor((zc - half - grid.origin[2]) / grid.spacing[2]).astype(int)
    k_hi = np.ceil((zc + half - grid.origin[2]) / grid.spacing[2]).astype(int)
    for k in range(max(k_lo.min(), 0), min(k_hi.max(), grid.shape[0] - 1) + 1):
        zk = grid.origin[2] + k * grid.spacing[2]
        qz = (zk - zc) / rb
        qq = (d / ra) ** 2 + qz**2
        sel = qq <= 1.0
        if not sel.any():
            continue
        cort = sel & (qq > 0.35)
        tissues[k, jj[sel], ii[sel]] = T["rib_marrow"]
        tissues[k, jj[cort], ii[cort]] = T["rib"]
