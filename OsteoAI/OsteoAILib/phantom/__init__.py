"""Digital chest / upper-abdomen CT phantom with known vertebral vBMD (mg/cm3 HA).

``make_phantom(PhantomParams()) -> Phantom`` builds the default: 300 axial slices of 512 x 512 at
0.7 x 0.7 x 1.0 mm covering T1-L2 of an osteopenic 65-year-old (vBMD ~88-110 mg/cm3, thoracic a
little denser than lumbar). ``write_phantom`` writes ct.nii.gz, vertebrae.nii.gz, bodies.nii.gz,
tissues.nii.gz, ct.json (acquisition tags), truth.json and, on request, a DICOM series.
Same seed and parameters -> identical arrays.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.volume import Volume
from scipy import ndimage

from .. import physics
from . import acquisition as acq
from .anatomy import SEQ, build_anatomy
from .params import DOSES, KERNELS, TISSUES, Phantom, PhantomParams

__all__ = ["DOSES", "KERNELS", "TISSUES", "Phantom", "PhantomParams", "make_phantom", "write_phantom", "default_vbmd"]

MANUFACTURER = "OsteoAI phantom"
CORE_MARGIN_MM = 2.5  # the noise-free truth HU is the mean of the trabecular core this far from bone edges


def default_vbmd(name: str, age: float) -> float:
    """Osteopenic spine at 65: L2 ~90 mg/cm3, rising ~1.5 mg/cm3 per level towards T1; -1.3 per year."""
    base_l2 = 90.0 - 1.3 * (age - 65.0)
    return base_l2 + (SEQ.index("L2") - SEQ.index(name)) * 1.5


def _check(params: PhantomParams) -> None:
    if params.dose not in DOSES:
        raise InputError(f"dose must be one of {', '.join(DOSES)}, got {params.dose!r}")
    if not 70 <= float(params.kvp) <= 140:
        raise InputError(f"kVp must be within 70-140, got {params.kvp}")
    if len(params.spacing) != 3:
        raise InputError("spacing must be (si, sj, sk) in mm")
    if params.hu_scale <= 0:
        raise InputError("hu_scale must be positive")
    if params.kernel is not None and params.kernel not in KERNELS:
        raise InputError(f"kernel must be one of {', '.join(KERNELS)}, got {params.kernel!r}")
    bad = set(params.tissue_offsets_hu or {}) - {"fat", "muscle", "blood"}
    if bad:
        raise InputError(f"tissue_offsets_hu takes fat, muscle and blood, not {', '.join(sorted(bad))}")
    if params.body_scale is not None and not 0.5 <= params.body_scale <= 2.0:
        raise InputError(f"body_scale must be within 0.5-2, got {params.body_scale}")


def make_phantom(params: PhantomParams | None = None) -> Phantom:
    params = params or PhantomParams()
    _check(params)
    rng = np.random.default_rng(params.seed)
    kvp = float(params.kvp)
    an = build_anatomy(params, rng)
    grid, tis = an.grid, an.tissues

    fat0 = params.marrow_fat_fraction
    if fat0 is None:
        fat0 = physics.marrow_fat_fraction_for_age(params.age) + rng.normal(0.0, 0.03)
    fat0 = float(np.clip(fat0, 0.05, 0.9))
    bmd = {k.strip().upper(): float(v) for k, v in (params.bmd or {}).items()}
    for k, v in bmd.items():
        if k not in SEQ[1:]:
            raise InputError(f"bmd level {k!r} must be within T1-L5")
        if not 0 <= v <= 400:
            raise InputError(f"vBMD for {k} must be within 0-400 mg/cm3, got {v}")

    lut = acq.tissue_hu(kvp, params.contrast, fat0, params.tissue_offsets_hu)
    bone_lut = {TISSUES["trabecular"]: np.zeros(64, np.float32), TISSUES["arch"]: np.zeros(64, np.float32)}
    marrow_delta = acq.contrast_delta(acq.CONTRAST_IODINE_MG_ML["marrow"], kvp) if params.contrast else 0.0
    per_level = {}
    for g in an.levels:
        vb = bmd.get(g.name, default_vbmd(g.name, params.age) + rng.normal(0.0, 2.5))
        vb = float(np.clip(vb, 0.0, 400.0))
        fat = float(np.clip(fat0 + rng.normal(0.0, 0.01), 0.05, 0.9))
        vb_img = vb / (1.0 - 0.5 * g.fracture)  # a compressed body holds its mineral in less volume
        hu_trab = physics.trabecular_hu(vb_img, fat, kvp) + marrow_delta
        hu_arch = physics.trabecular_hu(vb_img * acq.ARCH_VBMD_FACTOR, fat, kvp) + marrow_delta
        per_level[g.name] = dict(vbmd=vb, vbmd_img=vb_img, fat=fat, hu=hu_trab)
        bone_lut[TISSUES["trabecular"]][g.label] = hu_trab
        bone_lut[TISSUES["arch"]][g.label] = hu_arch

    texture = acq.TrabecularTexture(rng, grid)
    micro = None
    if params.texture_hu:
        # its own stream: the draws above (and so the legacy phantoms) are unchanged
        micro = acq.Microstructure(
            np.random.default_rng([int(params.seed), 11]), grid, float(params.texture_hu), float(params.texture_mm)
        )
        for g in an.levels:
            core = _core(an.bodies, tis, g, grid.spacing) if g.box is not None else None
            if core is not None:
                micro.centre(g.label, core)

    def hu_block(sl) -> np.ndarray:
        """Noise-free HU of a block of the grid (float32): physics plus the trabecular texture."""
        t = tis[sl]
        out = lut[t]
        v = an.vertebrae[sl]
        for tid, blut in bone_lut.items():
            m = t == tid
            out[m] = blut[v[m]]
            if tid == TISSUES["trabecular"]:
                if micro is not None:
                    micro.add(out, m, sl, v)
                else:
                    texture.add(out, m, sl)
        return out

    dose = DOSES[params.dose]
    kern = acq.kernel_settings(params)
    sigmas = acq._sigmas_vox(grid.spacing, kern["psf_fwhm_mm"])
    sigma = acq.noise_sigma(params)
    level_truth = []
    for g in an.levels:
        pl = per_level[g.name]
        entry = {
            "level": g.name,
            "label": g.label,
            "partial": g.partial,
            "vbmd_mg_cm3": round(pl["vbmd"], 3),
            "vbmd_in_image_mg_cm3": round(pl["vbmd_img"], 3),
            "marrow_fat_fraction": round(pl["fat"], 4),
            "trabecular_hu_physics": round(pl["hu"] * params.hu_scale + params.hu_offset, 3),
            "trabecular_hu_noise_free": None,
            "core_voxels": 0,
            "fracture": g.fracture > 0,
            "fracture_ratio": g.fracture,
            "centre_kji": [
                round(float(c), 3)
                for c in ((np.asarray(g.center) - np.asarray(grid.origin)) / np.asarray(grid.spacing))[::-1]
            ],
            "centre_lps_mm": [round(float(c), 3) for c in g.center],
            "tilt_deg": round(math.degrees(g.theta), 2),
            "heights_mm": g.heights(),
            "body_half_width_mm": round(g.a, 2),
            "body_half_depth_mm": round(g.b, 2),
            "cortex_mm": round(g.t_cortex, 3),
            "rib": bool(g.rib),
        }
        if g.box is not None:
            core = _core(an.bodies, tis, g, grid.spacing)
            if core is not None:
                entry["trabecular_hu_noise_free"] = round(
                    _noise_free_mean(hu_block, tis.shape, core, grid, an.outline, params, sigmas), 3
                )
                entry["core_voxels"] = int(core[1].sum())
        level_truth.append(entry)

    # White noise goes in before the blur: the reconstruction kernel gives it its texture.
    arr = acq.render(
        hu_block, tis.shape, _body_window(tis, sigmas), grid, an.outline, params, sigmas, sigma, int(params.seed)
    )

    spacing = grid.spacing
    meta = {
        "modality": "CT",
        "manufacturer": MANUFACTURER,
        "kvp": kvp,
        "dose": params.dose,
        "ctdivol": dose["ctdivol"],
        "kernel": kern["tag"],
        "slice_thickness": spacing[2],
        "age": params.age,
        "sex": params.sex,
        "noise_sigma_hu": round(sigma, 3),
        "contrast": params.contrast,
        "source": "osteoai-phantom",
    }
    vol = Volume(arr, spacing, grid.origin, np.eye(3), meta)
    blood = (
        physics.iodinated_blood_hu(acq.CONTRAST_IODINE_MG_ML["blood"], kvp)
        if params.contrast
        else physics.hu("blood", kvp)
    )
    ref = physics.reference_hu(kvp)
    ref_scan = {**ref, "blood": blood}
    truth = {
        "schema": "osteoai/phantom-truth/v1",
        "params": params.to_dict(),
        "levels": level_truth,
        "requested_levels": [g.name for g in an.levels if not g.partial],
        "rib_pairs": int(params.rib_pairs),
        "rib_levels": an.rib_levels,
        "noise_sigma_hu": round(sigma, 3),
        "effective_energy_kev": physics.effective_energy_kev(kvp),
        "marrow_fat_fraction": round(fat0, 4),
        "mineral_hu_per_mg": physics.mineral_hu_per_mg(kvp, fat0),
        "reference_hu_physics": {k: round(v, 3) for k, v in ref.items()},
        "reference_hu": {k: round(v * params.hu_scale + params.hu_offset, 3) for k, v in ref_scan.items()},
        "tissue_hu": {name: round(float(lut[i]), 3) for name, i in TISSUES.items()},
        "tissue_ids": dict(TISSUES),
        "grid": {
            "shape_kji": list(arr.shape),
            "spacing": list(spacing),
            "origin": list(grid.origin),
            "direction": np.eye(3).ravel().tolist(),
        },
        "acquisition": {k: meta[k] for k in ("kvp", "dose", "ctdivol", "kernel", "slice_thickness")}
        | {
            "psf_fwhm_mm": kern["psf_fwhm_mm"],
            "hu_scale": params.hu_scale,
            "hu_offset": params.hu_offset,
            "beam_hardening": params.beam_hardening,
            "cupping_centre_hu": 40.0 * params.beam_hardening,
        },
    }
    return Phantom(volume=vol, vertebrae=an.vertebrae, bodies=an.bodies, tissues=tis, truth=truth)


def _body_window(tis, sigmas):
    """(rows, cols) slices covering every non-air voxel plus the blur reach."""
    proj = tis.any(axis=0)
    rows, cols = np.nonzero(proj.any(axis=1))[0], np.nonzero(proj.any(axis=0))[0]
    if rows.size == 0:
        return slice(0, 1), slice(0, 1)
    pj, pi = int(3 * sigmas[1] + 3), int(3 * sigmas[2] + 3)
    return (
        slice(max(rows[0] - pj, 0), min(rows[-1] + pj + 1, tis.shape[1])),
        slice(max(cols[0] - pi, 0), min(cols[-1] + pi + 1, tis.shape[2])),
    )


def _noise_free_mean(hu_block, shape, core, grid, outline, params, sigmas) -> float:
    """Mean of the noise-free image (blurred, cupped, scaled) over the core, from a padded crop."""
    sl, m = core
    pad = [int(3.0 * s + 0.5) + 1 for s in sigmas]
    big = tuple(slice(max(sl[a].start - pad[a], 0), min(sl[a].stop + pad[a], shape[a])) for a in range(3))
    sub = acq.blur(hu_block(big), sigmas)
    acq.scanner(sub, grid, outline, big[0].start, big[1], big[2], params)
    inner = tuple(slice(sl[a].start - big[a].start, sl[a].stop - big[a].start) for a in range(3))
    return float(sub[inner][m].mean())


def _core(bodies, tissues, g, spacing):
    """Trabecular voxels of this body at least CORE_MARGIN_MM from its cortex / vein (a cropped box)."""
    sl = tuple(slice(g.box[2 * a], g.box[2 * a + 1]) for a in range(3))
    m = (bodies[sl] == g.label) & (tissues[sl] == TISSUES["trabecular"])
    if not m.any():
        return None
    nz = np.nonzero(m)
    lo = [int(n.min()) for n in nz]
    hi = [int(n.max()) + 1 for n in nz]
    sub = m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    pad = np.pad(sub, 1)
    dist = ndimage.distance_transform_edt(pad, sampling=(spacing[2], spacing[1], spacing[0]))[1:-1, 1:-1, 1:-1]
    core = dist > CORE_MARGIN_MM
    if not core.any():
        return None
    inner = tuple(slice(sl[a].start + lo[a], sl[a].start + hi[a]) for a in range(3))
    return inner, core


def write_phantom(ph: Phantom, out_dir, dicom: bool = False) -> dict[str, Path]:
    from .writer import write_all

    return write_all(ph, Path(out_dir), dicom=dicom)
