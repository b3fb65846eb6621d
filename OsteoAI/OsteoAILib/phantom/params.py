"""Phantom parameters, the result type and the tissue ids of the material map."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from OsteoAIBaseLib.volume import Volume

# Material map ids (``Phantom.tissues``). Trabecular / arch / rib-marrow HU depend on the level.
TISSUES: dict[str, int] = {
    "air": 0,
    "lung": 1,
    "fat": 2,  # subcutaneous, visceral, mediastinal and epidural fat
    "muscle": 3,  # paraspinal, psoas, chest/abdominal wall, oesophagus
    "blood": 4,  # descending aorta, heart (enhanced with contrast)
    "cortical": 5,  # vertebral cortex and endplates
    "trabecular": 6,  # vertebral body trabecular core
    "disc": 7,
    "csf": 8,  # spinal canal
    "cord": 9,
    "skin": 10,
    "rib": 11,  # rib cortex
    "basivertebral_vein": 12,
    "arch": 13,  # cancellous bone of pedicles, laminae and processes
    "rib_marrow": 14,
    "organ": 15,  # liver, spleen, kidneys (unenhanced solid organ)
    "airway": 16,  # trachea
}

DOSES: dict[str, dict] = {
    # Noise sigma (HU) at the reference voxel 0.7 x 0.7 x 1.0 mm; it scales with
    # 1/sqrt(voxel volume). Routine body CT with a soft kernel measures ~10 HU in fat/muscle at
    # 1 mm; a 1 mSv lung-screening protocol (CTDIvol ~1.5 mGy over a 35 cm chest, k 0.014-0.017
    # mSv/(mGy cm)) read with a sharper kernel ~35-45 HU. The noise falls faster than
    # 1/sqrt(dose) between classes because the low-dose protocols also use sharper kernels.
    "standard": {"sigma_hu": 10.0, "ctdivol": 8.0, "kernel": "STANDARD", "psf_fwhm_mm": 1.0},
    "low": {"sigma_hu": 20.0, "ctdivol": 3.0, "kernel": "STANDARD", "psf_fwhm_mm": 1.0},
    "ultralow": {"sigma_hu": 40.0, "ctdivol": 1.5, "kernel": "LUNG", "psf_fwhm_mm": 0.7},
}
REFERENCE_VOXEL_MM3 = 0.7 * 0.7 * 1.0

KERNELS: dict[str, dict] = {
    # Reconstruction kernels, chosen apart from the dose (``PhantomParams.kernel``). The image PSF
    # sets the resolution; the noise is filtered on its own (``noise_fwhm_mm``) and scaled
    # (``noise_factor``): a sharp lung kernel passes the noise's high frequencies, so at one dose its
    # noise is ~3x a soft kernel's and nearly white at the voxel scale. Measured on the two
    # reconstructions of one real chest CT (../shared/data/tcia-lungdx-chest-5mm, Philips B vs L):
    # reference-tissue noise 13 vs 49 HU, ROI lag-1 autocorrelation 0.81 vs 0.24.
    "soft": {"psf_fwhm_mm": 1.4, "noise_fwhm_mm": 1.6, "noise_factor": 0.75, "tag": "SOFT"},
    "standard": {"psf_fwhm_mm": 1.0, "noise_fwhm_mm": 1.0, "noise_factor": 1.0, "tag": "STANDARD"},
    "lung": {"psf_fwhm_mm": 0.6, "noise_fwhm_mm": 0.45, "noise_factor": 2.6, "tag": "LUNG"},
}


@dataclass
class PhantomParams:
    seed: int = 0
    kvp: float = 120
    dose: str = "standard"  # standard | low | ultralow (~1 mSv lung screening)
    levels: str = "T1-L2"  # VerSe levels covered (T1..L5)
    bmd: dict[str, float] | None = None  # per-level vBMD override, mg/cm3 HA
    fracture: dict[str, float] | None = None  # level -> height-loss ratio (e.g. {"T12": 0.3})
    contrast: bool = False  # enhanced aorta, heart, organs and marrow
    age: float = 65.0
    sex: str = "F"
    marrow_fat_fraction: float | None = None  # None -> from age (+ small seeded jitter)
    matrix: int = 512  # in-plane voxels
    spacing: tuple = (0.7, 0.7, 1.0)  # (si, sj, sk) mm
    slices: int | None = None  # None -> enough to cover the levels (+ margins)
    hu_scale: float = 1.0
    hu_offset: float = 0.0  # scanner miscalibration: HU_out = scale * HU + offset
    beam_hardening: float = 0.0  # cupping: HU deficit at the body centre = 40 HU * strength
    rib_pairs: int = 12  # 11 or 13 for labelling-QC tests
    # Realism knobs (training phantoms draw them, see vbmd_model/dataset.py); each default keeps the
    # default phantom exactly as it was, so tests built on it are unchanged.
    kernel: str | None = None  # soft | standard | lung (KERNELS); None = the dose's kernel, noise blurred as the image
    texture_hu: float | None = None  # trabecular microstructure SD (HU, before blur); None = the legacy smooth texture
    texture_mm: float = 2.0  # microstructure scale: wavelengths texture_mm..4*texture_mm
    noise_scale: float = 1.0  # noise beyond the dose class: dose modulation, scanner, tissue heterogeneity
    streaks_hu: float = 0.0  # low-dose photon-starvation streaks: peak amplitude (HU) through the body
    body_scale: float | None = None  # habitus: body outline scale (1 = the small adult); None = fit the FOV
    fat_mm: float | None = None  # subcutaneous fat thickness; None = drawn 10-22 mm
    tissue_offsets_hu: dict[str, float] | None = None  # composition of this patient's fat / muscle / blood vs the table

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spacing"] = [float(s) for s in self.spacing]
        return d


@dataclass
class Phantom:
    volume: Volume  # int16 HU, canonical LPS (i -> left, j -> posterior, k -> superior)
    vertebrae: np.ndarray  # int16 VerSe ids, whole vertebra
    bodies: np.ndarray  # int16 VerSe ids, vertebral body only
    tissues: np.ndarray  # uint8 TISSUES ids
    truth: dict = field(default_factory=dict)
