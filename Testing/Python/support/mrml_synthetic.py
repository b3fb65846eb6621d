"""Synthetic screening output for the MRML tests (no tests here): three vertebrae as blocks on an
oblique grid, a trabecular ROI in each with known HU, and results that state exactly those values.
Small on purpose: every MRML test builds a scene from it in milliseconds."""

from __future__ import annotations

import numpy as np
from OsteoAILib.pipeline import PipelineOutput
from OsteoAILib.results import Calibration, Diagnosis, LevelResult, Results, acr_category

LEVELS = {"T12": (19, 26, 180.0), "L1": (20, 15, 130.0), "L2": (21, 4, 90.0)}  # label, first slice, ROI HU


def _oblique(deg: float) -> np.ndarray:
    a = np.radians(deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, -1.0])  # not LPS-aligned: geometry must come through the matrices
    return rot @ flip


def synthetic_output(seed: int = 0) -> PipelineOutput:
    from OsteoAIBaseLib.volume import Volume

    rng = np.random.default_rng(seed)
    shape = (36, 30, 28)  # k, j, i
    ct = rng.normal(0, 8, shape)
    vert = np.zeros(shape, np.int16)
    rois = np.zeros(shape, np.int16)
    for lab, k0, hu in LEVELS.values():
        vert[k0 : k0 + 8, 6:24, 6:22] = lab
        ct[k0 : k0 + 8, 6:24, 6:22] = 500 + rng.normal(0, 20, (8, 18, 16))
        rois[k0 + 2 : k0 + 6, 10:20, 10:18] = lab
        ct[k0 + 2 : k0 + 6, 10:20, 10:18] = hu + rng.normal(0, 15, (4, 10, 8))
    vol = Volume(np.round(ct).astype(np.int16), (1.2, 1.0, 2.5), (10.0, -20.0, 30.0), _oblique(10.0),
                 {"source": "synthetic.nii.gz"})  # fmt: skip
    levels = []
    for name, (lab, _, _) in LEVELS.items():
        v = vol.array[rois == lab].astype(float)
        vb = 0.8 * v.mean()
        levels.append(LevelResult(
            level=name, label=lab, roi_volume_mm3=v.size * vol.voxel_volume_mm3, roi_mean_hu=float(v.mean()),
            roi_median_hu=float(np.median(v)), roi_sd_hu=float(v.std(ddof=1)), vbmd_mg_cm3=vb,
            vbmd_ci95=(vb - 5, vb + 5), vbmd_method="calibrated-hu (internal)",
            qc=["fov_cut: T12 touches the top of the scan"] if name == "T12" else [],
            used_for_diagnosis=name in ("L1", "L2"), extra={"height_mm": 20.0},
        ))  # fmt: skip
    used = [lv.vbmd_mg_cm3 for lv in levels if lv.used_for_diagnosis]
    mean = float(np.mean(used))
    results = Results(
        input={"source": "synthetic.nii.gz", "shape": list(shape)},
        levels=levels,
        diagnosis=Diagnosis(
            vbmd_mg_cm3=mean,
            category=acr_category(mean),
            levels=["L1", "L2"],
            criteria="test",
            vbmd_ci95=(mean - 4, mean + 4),
            pickhardt_l1_hu=levels[1].roi_mean_hu,
            pickhardt_triage="indeterminate",
        ),
        calibration=Calibration(
            method="internal",
            slope=1.25,
            intercept=0.0,
            residual_hu=3.0,
            kvp=120.0,
            kvp_source="default",
            hu_per_mg_cm3=1.0,
        ),
        qc=["low_dose: noise 15 HU"],
        software={"osteoai": "0.1.0"},
        key_images=[
            {
                "name": "1_sagittal",
                "file": "key_images/1_sagittal.png",
                "title": "Sagittal overview",
                "plane": "sagittal",
                "level": None,
                "center_lps": [12.0, -5.5, 60.25],
            },
            {
                "name": "2_axial_L1",
                "file": "key_images/2_axial_L1.png",
                "title": "L1 axial",
                "plane": "axial",
                "level": "L1",
                "center_lps": [8.0, -3.0, 50.0],
            },
        ],
    )
    return PipelineOutput(results=results, volume=vol, vertebrae=vert, rois=rois)
