"""Per-level input features of the AI vBMD estimator: ONE function, used by training and inference.

Every HU quantity is taken *after* the scan's internal calibration (HU_true = slope*HU + intercept),
so a linear change of the scanner's HU scale (HU' = a*HU + b) leaves the features, and hence the
prediction, unchanged: the calibration absorbs a and b. The calibration's own slope and intercept
are features too (they tell the model how far this scanner is from nominal), with a training range
that spans the scanner scale/offset variation, so the model learns to give them little weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The reference tissues of the internal calibration, in the table's order. Any extra reference
# calibration.py adds is ignored, a missing one reads as "not used" (residual 0, used 0).
from ..reference_table import REFERENCE_NAMES as REFERENCES

QUANTILES = (5, 10, 25, 50, 75, 90, 95)

FEATURE_NAMES: tuple[str, ...] = (
    "plain_vbmd",  # the calibrated-HU estimate itself; the model predicts a correction to it
    "cal_mean_hu",
    "cal_median_hu",
    "cal_sd_hu",
    *(f"cal_q{q:02d}_hu" for q in QUANTILES),
    "cal_skew",
    *(f"ref_{r}_residual_hu" for r in REFERENCES),  # calibrated measured HU minus expected HU
    *(f"ref_{r}_used" for r in REFERENCES),
    # Calibrated aortic blood minus unenhanced blood, also when the fit left the blood out as
    # enhanced: how much iodine there is, so the model can scale the marrow's iodine correction
    # (the plain estimate only flags contrast). 0 when no aortic ROI was found.
    "blood_enhancement_hu",
    # Air clipped by the scanner leaves the fit to the soft tissues alone, whose composition varies
    # from patient to patient; the clip still bounds it: true air (-1000 HU) lies at or below the
    # clipped value, so the fit's HU for that value minus -1000 must be >= 0, and below 0 the fitted
    # slope is too steep by about that much. 0 when air was used or not clipped.
    "air_clip_margin_hu",
    "cal_slope",
    "cal_intercept",
    "cal_residual_hu",
    "kvp",
    "noise_sd_hu",  # calibrated HU noise, from the homogeneous references or the ROI itself
    "slice_thickness_mm",
    "pixel_mm",
    "log_roi_volume_mm3",
    "age_years",  # 0 when unknown; age_known says which
    "age_known",
)
N_FEATURES = len(FEATURE_NAMES)


@dataclass
class LevelInput:
    """What the features of one level are computed from (all of it available in the pipeline)."""

    roi_hu: np.ndarray  # raw scanner HU of the ROI voxels (any shape; flattened)
    calibration: object  # results.Calibration (slope, intercept, references, kvp, hu_per_mg_cm3...)
    spacing: tuple[float, float, float]  # (si, sj, sk) mm
    noise_sd_hu: float | None = None  # raw-HU noise; None = estimate from the references
    age: float | None = None


def plain_vbmd(mean_raw_hu: float, cal) -> float:
    """The plain calibrated-HU estimate (what bmd.py reports without the model) from the raw ROI mean."""
    try:
        from ..calibration import hu_to_vbmd
    except ImportError:  # calibration.py not built into this install: its documented linear form
        return float((cal.slope * mean_raw_hu + cal.intercept - cal.hu_at_zero_mg_cm3) / cal.hu_per_mg_cm3)
    return float(hu_to_vbmd(mean_raw_hu, cal))


def reference_noise_sd(cal) -> float | None:
    """Raw-HU noise from the homogeneous references (median of their SDs), None when unavailable."""
    sds = []
    for name, ref in (getattr(cal, "references", None) or {}).items():
        if name in ("muscle", "fat", "blood", "air") and ref.get("used", True) and ref.get("sd_hu"):
            sds.append(float(ref["sd_hu"]))
    return float(np.median(sds)) if sds else None


def roi_noise_sd(roi_hu: np.ndarray) -> float:
    """Fallback raw-HU noise: robust SD of the ROI (upper bound: includes the trabecular texture)."""
    x = np.asarray(roi_hu, dtype=float).ravel()
    mad = np.median(np.abs(x - np.median(x)))
    return float(1.4826 * mad)


def level_features(inp: LevelInput) -> np.ndarray:
    """Feature vector (float32, order FEATURE_NAMES) of one level."""
    cal = inp.calibration
    slope, intercept = float(cal.slope), float(cal.intercept)
    raw = np.asarray(inp.roi_hu, dtype=float).ravel()
    x = slope * raw + intercept
    if x.size < 2:
        raise ValueError("level_features needs an ROI of at least 2 voxels")
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    q = np.percentile(x, QUANTILES)
    skew = float(np.mean(((x - mean) / sd) ** 3)) if sd > 0 else 0.0

    refs = getattr(cal, "references", None) or {}
    residuals, used = [], []
    for name in REFERENCES:
        ref = refs.get(name) or {}
        ok = bool(ref.get("used", False)) and ref.get("measured_hu") is not None
        expected = ref.get("expected_hu")
        if ok and ref.get("residual_hu") is not None:
            # the calibration's own residual: it knows its full model (e.g. a cupping term by depth)
            residuals.append(float(ref["residual_hu"]))
        elif ok and expected is not None:
            residuals.append(slope * float(ref["measured_hu"]) + intercept - float(expected))
        else:
            residuals.append(0.0)
        used.append(1.0 if ok else 0.0)

    blood = refs.get("blood") or {}
    enhancement = 0.0
    if blood.get("measured_hu") is not None and blood.get("expected_hu") is not None:
        enhancement = slope * float(blood["measured_hu"]) + intercept - float(blood["expected_hu"])

    air = refs.get("air") or {}
    clip = air.get("clipped_below_hu")
    clip_margin = 0.0 if clip is None or air.get("used") else slope * float(clip) + intercept + 1000.0

    noise = inp.noise_sd_hu if inp.noise_sd_hu is not None else reference_noise_sd(cal)
    if noise is None:
        noise = roi_noise_sd(inp.roi_hu)
    si, sj, sk = (float(s) for s in inp.spacing)
    roi_volume = x.size * si * sj * sk
    age_known = inp.age is not None and math.isfinite(float(inp.age))

    feats = [
        plain_vbmd(float(raw.mean()), cal),
        mean,
        float(np.median(x)),
        sd,
        *(float(v) for v in q),
        skew,
        *residuals,
        *used,
        enhancement,
        clip_margin,
        slope,
        intercept,
        float(cal.residual_hu) if cal.residual_hu is not None else 0.0,
        float(cal.kvp),
        abs(slope) * float(noise),
        sk,
        math.sqrt(si * sj),
        math.log(max(roi_volume, 1.0)),
        float(inp.age) if age_known else 0.0,
        1.0 if age_known else 0.0,
    ]
    out = np.asarray(feats, dtype=np.float32)
    assert out.shape == (N_FEATURES,)
    return out


def volume_level_features(vol, roi_labelmap: np.ndarray, labels, calibration, age: float | None = None):
    """{label: feature vector} for each ROI label present in ``roi_labelmap`` (a Volume's grid).

    The convenience wrapper the pipeline and the training script both call.
    """
    arr = np.asarray(vol.array)
    rois = np.asarray(getattr(roi_labelmap, "array", roi_labelmap))
    noise = reference_noise_sd(calibration)
    out: dict[int, np.ndarray] = {}
    for lab in labels:
        vox = arr[rois == int(lab)]
        if vox.size < 2:
            continue
        out[int(lab)] = level_features(LevelInput(vox, calibration, vol.spacing, noise, age))
    return out
