"""From a material map to a CT image: physics HU, PSF and slice profile, cupping, scanner
scale/offset and dose-dependent correlated quantum noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .. import physics
from .params import DOSES, REFERENCE_VOXEL_MM3, TISSUES, PhantomParams

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


def tissue_hu(kvp: float, contrast: bool, marrow_fat: float) -> np.ndarray:
    """HU lookup table indexed by tissue id (level-dependent bone is filled in separately)."""
    lut = np.zeros(max(T.values()) + 1, np.float32)
    mats = {"air": "air", "lung": "lung", "fat": "adipose", "muscle": "muscle", "blood": "blood",
            "cortical": "cortical_bone", "disc": "cartilage", "csf": "csf", "cord": "spinal_cord", "skin": "skin",
            "rib": "cortical_bone", "basivertebral_vein": "blood", "organ": "liver", "airway": "air"}
    for t, m in mats.items():
        lut[T[t]] = physics.hu(m, kvp)
    lut[T["rib_marrow"]] = physics.trabecular_hu(RIB_VBMD, marrow_fat, kvp)
    if contrast:
        lut[T["blood"]] = physics.iodinated_blood_hu(CONTRAST_IODINE_MG_ML["blood"], kvp)
        lut[T["basivertebral_vein"]] = physics.iodinated_blood_hu(CONTRAST_IODINE_MG_ML["vein"], kvp)
        lut[T["organ"]] += contrast_delta(CONTRAST_IODINE_MG_ML["organ"], kvp)
    return lut


def contrast_delta(iodine_mg_ml: float, kvp: float) -> float:
    """HU added by iodine at the given concentration (same in any water-like tissue)."""
    return physics.iodinated_blood_hu(iodine_mg_ml, kvp) - physics.hu("blood", kvp)


def noise_sigma(params: PhantomParams) -> float:
    vox = float(np.prod(params.spacing))
    return DOSES[params.dose]["sigma_hu"] * math.sqrt(REFERENCE_VOXEL_MM3 / vox)


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


def render(hu_block, shape, window, grid, outline: dict, params: PhantomParams, sigmas, sigma: float,
           seed: int, slab: int = 24) -> np.ndarray:
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
    amp = np.float32(sigma / noise_gain(sigmas)) if sigma > 0 else np.float32(0)
    air = -1000.0 * params.hu_scale + params.hu_offset
    bank_rng = np.random.default_rng([seed, 2])
    bank = [np.clip(np.rint(air + sigma * bank_rng.standard_normal((nj, ni), dtype=np.float32)), -1024, 3071)
            .astype(np.int16) for _ in range(17)]
    out = np.empty(shape, np.int16)
    for k0 in range(0, nk, slab):
        k1 = min(k0 + slab, nk)
        a, b = max(k0 - halo, 0), min(k1 + halo, nk)
        block = hu_block((slice(a, b), js, is_))
        if amp > 0:
            for n, k in enumerate(range(a, b)):
                block[n] += amp * np.random.default_rng([seed, 3, k]).standard_normal(block.shape[1:], np.float32)
        sub = blur(block, sigmas)[k0 - a:k0 - a + (k1 - k0)]
        scanner(sub, grid, outline, k0, js, is_, params)
        np.rint(sub, out=sub)
        np.clip(sub, -1024, 3071, out=sub)
        for k in range(k0, k1):
            out[k] = bank[k % len(bank)]
        out[k0:k1, js, is_] = sub
    return out
