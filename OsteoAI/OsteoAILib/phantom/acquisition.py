"""From a material map to a CT image: physics HU, PSF and slice profile, cupping, scanner
scale/offset and dose-dependent correlated quantum noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .. import physics
from .params import DOSES, KERNELS, REFERENCE_VOXEL_MM3, TISSUES, PhantomParams

T = TISSUES
CONTRAST_IODINE_MG_ML = {"blood": 8.0, "organ": 1.2, "marrow": 0.5, "vein": 3.0}
RIB_VBMD = 140.0  # rib cancellous bone, mg/cm3 HA
ARCH_VBMD_FACTOR = 1.35  # posterior elements are denser than the body


TEXTURE_HU = 18.0  # standard deviation of the trabecular texture (before blur and noise)


class TrabecularTexture:
    """Zero-mean spatial heterogeneity of trabecular bone: a seeded sum of plane waves with
    wavelengths of 2.5-6 mm, a deterministic function of position (so the noise-free truth, which
    averages it over the core, stays exact)."""

    def __init__(self, rng: np.random.Generator, grid, n: int = 8, amplitude: float = TEXTURE_HU):
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        self.k = (2 * np.pi / rng.uniform(2.5, 6.0, n))[:, None] * d  # rad/mm, (x, y, z)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.amp = amplitude * math.sqrt(2.0 / n)
        self.grid = grid

    def add(self, out: np.ndarray, mask: np.ndarray, sl) -> None:
        kk, jj, ii = np.nonzero(mask)
        if kk.size == 0:
            return
        o, sp = self.grid.origin, self.grid.spacing
        x = o[0] + (ii + sl[2].start) * sp[0]
        y = o[1] + (jj + sl[1].start) * sp[1]
        z = o[2] + (kk + sl[0].start) * sp[2]
        tex = np.zeros(kk.size, np.float64)
        for (kx, ky, kz), ph in zip(self.k, self.phase, strict=True):
            tex += np.cos(kx * x + ky * y + kz * z + ph)
        out[kk, jj, ii] += (self.amp * tex).astype(np.float32)


class Microstructure:
    """Stochastic trabecular microstructure: a Gaussian-like random field (many plane waves of random
    direction and phase, wavelengths ``scale_mm``..4x, log-uniform) that is still a deterministic function of
    position, so slab halos and the noise-free truth see the same bone.

    Real ROIs show it: at 0.7 x 1.25 mm voxels the trabecular ROI SD is ~75 HU of which noise is
    ~20; at 5 mm slices ~30 HU (../shared/data). Three properties keep it honest:
    - each wave is averaged over the voxel (a box, as a detector and slice integrate), so thick slices
      smooth it as a scanner does instead of aliasing point samples;
    - wave vectors lean toward the axial plane (vertical trabeculae: the field varies less along z);
    - it has zero mean over each body's trabecular core (:meth:`centre`): it moves mineral around,
      it adds none, so the level's vBMD stays the truth.
    """

    def __init__(self, rng: np.random.Generator, grid, amplitude: float, scale_mm: float, n: int = 48):
        d = rng.normal(size=(n, 3))
        d[:, 2] *= 0.5
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        lam = scale_mm * np.exp(rng.uniform(0.0, math.log(4.0), n))  # log-uniform, scale_mm..4x
        k = (2 * np.pi / lam)[:, None] * d  # rad/mm, (x, y, z)
        box_var = (np.asarray(grid.spacing, dtype=float) ** 2) / 12.0
        atten = np.exp(-0.5 * (k**2 @ box_var))
        self.k, self.phase = k, rng.uniform(0, 2 * np.pi, n)
        self.amp = amplitude * math.sqrt(2.0 / n) * atten
        self.grid = grid
        self.offset = np.zeros(64, np.float64)  # per vertebra label: the field's mean over its core

    def values(self, kk, jj, ii, sl) -> np.ndarray:
        o, sp = self.grid.origin, self.grid.spacing
        x = o[0] + (ii + sl[2].start) * sp[0]
        y = o[1] + (jj + sl[1].start) * sp[1]
        z = o[2] + (kk + sl[0].start) * sp[2]
        tex = np.zeros(kk.size, np.float64)
        for (kx, ky, kz), ph, a in zip(self.k, self.phase, self.amp, strict=True):
            tex += a * np.cos(kx * x + ky * y + kz * z + ph)
        return tex

    def centre(self, label: int, core) -> None:
        """Make the field zero-mean over one body's trabecular core ``(slices, mask)``, where ROIs lie."""
        sl, m = core
        kk, jj, ii = np.nonzero(m)
        if kk.size:
            self.offset[int(label)] = float(self.values(kk, jj, ii, sl).mean())

    def add(self, out: np.ndarray, mask: np.ndarray, sl, labels: np.ndarray) -> None:
        kk, jj, ii = np.nonzero(mask)
        if kk.size == 0:
            return
        tex = self.values(kk, jj, ii, sl) - self.offset[labels[kk, jj, ii].astype(np.int64)]
        out[kk, jj, ii] += tex.astype(np.float32)


def kernel_settings(params: PhantomParams) -> dict:
    """PSF and noise filter of the reconstruction: ``params.kernel`` or, when None, the dose's own."""
    if params.kernel is None:
        dose = DOSES[params.dose]
        return {"psf_fwhm_mm": dose["psf_fwhm_mm"], "noise_fwhm_mm": None, "noise_factor": 1.0, "tag": dose["kernel"]}
    return KERNELS[params.kernel]


def tissue_hu(kvp: float, contrast: bool, marrow_fat: float, offsets: dict | None = None) -> np.ndarray:
    """HU lookup table indexed by tissue id (level-dependent bone is filled in separately)."""
    lut = np.zeros(max(T.values()) + 1, np.float32)
    mats = {
        "air": "air",
        "lung": "lung",
        "fat": "adipose",
        "muscle": "muscle",
        "blood": "blood",
        "cortical": "cortical_bone",
        "disc": "cartilage",
        "csf": "csf",
        "cord": "spinal_cord",
        "skin": "skin",
        "rib": "cortical_bone",
        "basivertebral_vein": "blood",
        "organ": "liver",
        "airway": "air",
    }
    for t, m in mats.items():
        lut[T[t]] = physics.hu(m, kvp)
    lut[T["rib_marrow"]] = physics.trabecular_hu(RIB_VBMD, marrow_fat, kvp)
    if contrast:
        lut[T["blood"]] = physics.iodinated_blood_hu(CONTRAST_IODINE_MG_ML["blood"], kvp)
        lut[T["basivertebral_vein"]] = physics.iodinated_blood_hu(CONTRAST_IODINE_MG_ML["vein"], kvp)
        lut[T["organ"]] += contrast_delta(CONTRAST_IODINE_MG_ML["organ"], kvp)
    for name, dh in (offsets or {}).items():
        lut[T[name]] += np.float32(dh)  # this patient's fat / muscle / blood composition
    return lut


def contrast_delta(iodine_mg_ml: float, kvp: float) -> float:
    """HU added by iodine at the given concentration (same in any water-like tissue)."""
    return physics.iodinated_blood_hu(iodine_mg_ml, kvp) - physics.hu("blood", kvp)


def noise_sigma(params: PhantomParams) -> float:
    vox = float(np.prod(params.spacing))
    sigma = (
        DOSES[params.dose]["sigma_hu"]
        * kernel_settings(params)["noise_factor"]
        * float(params.noise_scale)
        * math.sqrt(REFERENCE_VOXEL_MM3 / vox)
    )
    if params.body_scale is not None:
        # quanta fall as exp(-mu*d) along the ~214 mm (x body_scale) AP path, water mu ~0.019/mm:
        # noise ~ exp(mu*d/2) relative to the small adult (body_scale 1)
        sigma *= math.exp(0.019 * 214.0 * (float(params.body_scale) - 1.0) / 2.0)
    return sigma


def noise_sigmas_vox(params: PhantomParams, spacing) -> tuple[float, float, float] | None:
    """Voxel sigmas of the noise filter when the kernel filters noise apart from the image, else None."""
    fwhm = kernel_settings(params)["noise_fwhm_mm"]
    return None if fwhm is None else _sigmas_vox(spacing, fwhm)


def streaks(shape_ji, window, grid, outline: dict, k: int, amp_hu: float, seed: int) -> np.ndarray:
    """Low-dose photon-starvation streaks on slice ``k``: a few thin bright/dark lines through the body
    centre, mostly lateral (the longest, most attenuating path), each of random sign and strength."""
    rng = np.random.default_rng([seed, 5, k])
    js, is_ = window
    x = grid.x()[is_][None, :].astype(np.float32)
    y = (grid.y()[js][:, None] - outline["y_mid"][k]).astype(np.float32)
    out = np.zeros(shape_ji, np.float32)
    for _ in range(3):
        ang = rng.normal(0.0, 0.25)
        dist = np.abs(-np.sin(ang) * x + np.cos(ang) * (y - rng.normal(0.0, 20.0)))
        out += np.float32(amp_hu * rng.normal()) * np.exp(-0.5 * (dist / 1.5) ** 2)
    return out


def _sigmas_vox(spacing, psf_fwhm_mm: float) -> tuple[float, float, float]:
    """Gaussian sigmas (voxels) along k, j, i: slice profile FWHM = slice spacing, in-plane PSF."""
    si, sj, sk = spacing
    sig = (sk / 2.355 / sk, psf_fwhm_mm / 2.355 / sj, psf_fwhm_mm / 2.355 / si)
    return tuple(s if s > 0.2 else 0.0 for s in sig)


def _kernel(sigma: float, truncate: float = 3.0) -> np.ndarray:
    r = int(truncate * sigma + 0.5)  # as scipy.ndimage.gaussian_filter1d builds it
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


def noise_gain(sigmas) -> float:
    """Standard deviation of unit white noise after the separable blur."""
    var = 1.0
    for s in sigmas:
        if s > 0:
            var *= float(np.sum(_kernel(s) ** 2))
    return math.sqrt(var)


def blur(img: np.ndarray, sigmas) -> np.ndarray:
    """Separable Gaussian blur (voxel sigmas along k, j, i) into a new float32 array."""
    out = img
    for axis, s in enumerate(sigmas):
        if s > 0:
            out = ndimage.gaussian_filter1d(out, s, axis=axis, truncate=3.0, output=np.float32)
    return out if out is not img else img.copy()


def cupping_field(grid, outline: dict, k: int, js: slice, is_: slice, strength: float) -> np.ndarray:
    """Beam-hardening cupping on slice k: 40 HU * strength lower at the body centre, 0 at the skin."""
    x = grid.x()[is_][None, :]
    y = grid.y()[js][:, None]
    ax, ay, ym = outline["ax"][k], outline["ay"][k], outline["y_mid"][k]
    r2 = (x / np.float32(ax)) ** 2 + ((y - np.float32(ym)) / np.float32(ay)) ** 2
    return np.float32(40.0 * strength) * np.clip(1.0 - r2, 0.0, 1.0)


def scanner(sub: np.ndarray, grid, outline: dict, k0: int, js: slice, is_: slice, params: PhantomParams) -> None:
    """Cupping then HU scale / offset, in place, on a block starting at slice k0."""
    if params.beam_hardening:
        for n in range(sub.shape[0]):
            sub[n] -= cupping_field(grid, outline, k0 + n, js, is_, float(params.beam_hardening))
    if params.hu_scale != 1.0 or params.hu_offset != 0.0:
        sub *= np.float32(params.hu_scale)
        sub += np.float32(params.hu_offset)


def render(
    hu_block, shape, window, grid, outline: dict, params: PhantomParams, sigmas, sigma: float, seed: int, slab: int = 24
) -> np.ndarray:
    """The CT image as int16, slab by slab (no full float volume is ever held).

    Inside ``window`` (a (rows, cols) slice pair covering the body): physics HU from ``hu_block``
    plus white noise, then the blur (PSF and slice profile, which also gives the noise its
    texture), cupping, scale/offset, rounding. The noise of slice k comes from its own generator,
    so slab halos see the same noise. Outside the window (air only) each slice gets white noise of
    the same sigma taken from a small bank of noise planes: that air holds no information.
    """
    nk, nj, ni = shape
    js, is_ = window
    halo = int(3.0 * sigmas[0] + 0.5) + 1 if sigmas[0] > 0 else 0
    nsig = noise_sigmas_vox(params, grid.spacing)
    amp = np.float32(sigma / noise_gain(nsig or sigmas)) if sigma > 0 else np.float32(0)
    air = -1000.0 * params.hu_scale + params.hu_offset
    bank_rng = np.random.default_rng([seed, 2])
    bank = [
        np.clip(np.rint(air + sigma * bank_rng.standard_normal((nj, ni), dtype=np.float32)), -1024, 3071).astype(
            np.int16
        )
        for _ in range(17)
    ]
    out = np.empty(shape, np.int16)
    for k0 in range(0, nk, slab):
        k1 = min(k0 + slab, nk)
        a, b = max(k0 - halo, 0), min(k1 + halo, nk)
        block = hu_block((slice(a, b), js, is_))
        white = None
        if amp > 0:
            white = np.empty_like(block) if nsig is not None else block
            for n, k in enumerate(range(a, b)):
                draw = amp * np.random.default_rng([seed, 3, k]).standard_normal(block.shape[1:], np.float32)
                if nsig is not None:
                    white[n] = draw
                else:
                    white[n] += draw
        sub = blur(block, sigmas)[k0 - a : k0 - a + (k1 - k0)]
        if nsig is not None and white is not None:
            # a kernel filters the noise apart from the image: its own noise texture
            sub += blur(white, nsig)[k0 - a : k0 - a + (k1 - k0)]
        if params.streaks_hu:
            for n, k in enumerate(range(k0, k1)):
                sub[n] += streaks(sub.shape[1:], window, grid, outline, k, float(params.streaks_hu), seed)
        scanner(sub, grid, outline, k0, js, is_, params)
        np.rint(sub, out=sub)
        np.clip(sub, -1024, 3071, out=sub)
        for k in range(k0, k1):
            out[k] = bank[k % len(bank)]
        out[k0:k1, js, is_] = sub
    return out
