"""Per-level trabecular statistics, vBMD and the ACR diagnosis from the diagnostic levels.

``measure_levels`` is also what the Slicer panel calls after the user edits an ROI: it needs only the
volume, the ROI labelmap and the calibration, never the segmentation.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from OsteoAIBaseLib.levels import NAMES, parse_range
from OsteoAIBaseLib.volume import Volume

from .label_boxes import boxes_by_label
from .qc import EXCLUDING, code, implausible_flags
from .results import (
    ACR_NORMAL_ABOVE,
    ACR_OSTEOPOROSIS_BELOW,
    Calibration,
    Diagnosis,
    LevelResult,
    acr_category,
    pickhardt_triage,
)

# Preferred diagnostic levels, best first: the ACR reads two lumbar levels; chest CT often ends at L1/L2,
# so T12 and T11 are the fall-backs.
DEFAULT_DIAGNOSTIC_PREFERENCE = ["L1", "L2", "T12", "T11"]
N_DIAGNOSTIC_LEVELS = 2
# Noise in CT is spatially correlated over a few voxels; count independent samples per this many voxels
# when turning an ROI's SD into the standard error of its mean.
VOXELS_PER_INDEPENDENT_SAMPLE = 8


def roi_statistics(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "median": None, "sd": None}
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "sd": sd}


def calibrated_vbmd(mean_hu: float, sd_hu: float, n: int, cal: Calibration) -> tuple[float, tuple[float, float]]:
    """vBMD from the mean ROI HU through the calibration, with a 95% interval from ROI noise and fit residual."""
    from .calibration import hu_to_vbmd

    vbmd = float(hu_to_vbmd(mean_hu, cal))
    sens = cal.hu_per_mg_cm3 or 1.0
    n_eff = max(1.0, n / VOXELS_PER_INDEPENDENT_SAMPLE)
    se_hu = np.hypot(abs(cal.slope) * sd_hu / np.sqrt(n_eff), cal.residual_hu or 0.0)
    half = 1.96 * se_hu / sens
    return vbmd, (vbmd - half, vbmd + half)


def measure_levels(
    vol: Volume,
    rois: np.ndarray,
    cal: Calibration,
    labels: Iterable[int] | None = None,
    level_qc: dict[int, list[str]] | None = None,
    extra: dict[int, dict] | None = None,
    estimator=None,
) -> list[LevelResult]:
    """One LevelResult per ROI label (cranial -> caudal).

    ``estimator(label, values, cal) -> (vbmd, (lo, hi), method) | None`` lets the AI model replace the
    plain calibrated estimate; it returns None when it cannot judge a level.
    """
    boxes = boxes_by_label(rois)
    wanted = list(boxes) if labels is None else list(labels)
    out: list[LevelResult] = []
    for lab in sorted(wanted, key=_craniocaudal):
        box = boxes.get(lab)
        values = vol.array[box][rois[box] == lab] if box else np.empty(0)
        st = roi_statistics(values)
        lr = LevelResult(level=NAMES.get(lab, str(lab)), label=lab, qc=list((level_qc or {}).get(lab, [])))
        lr.extra = dict((extra or {}).get(lab, {}))
        lr.roi_volume_mm3 = st["n"] * vol.voxel_volume_mm3
        if st["n"] == 0:
            lr.qc.append("no_roi: no trabecular ROI could be placed in this vertebral body")
            out.append(lr)
            continue
        lr.roi_mean_hu, lr.roi_median_hu, lr.roi_sd_hu = st["mean"], st["median"], st["sd"]
        lr.vbmd_mg_cm3, lr.vbmd_ci95 = calibrated_vbmd(st["mean"], st["sd"], st["n"], cal)
        lr.vbmd_method = f"calibrated-hu ({cal.method})"
        lr.vbmd_reason = "no AI estimator in this run (software.vbmd_choice says why)"
        if estimator is not None:
            est = estimator(lab, values, cal)
            if est is not None:
                lr.extra["vbmd_calibrated_hu"] = lr.vbmd_mg_cm3
                lr.extra["vbmd_calibrated_hu_ci95"] = list(lr.vbmd_ci95)
                lr.vbmd_mg_cm3, lr.vbmd_ci95, lr.vbmd_method = est
            # the AI estimator says per level why it did or did not judge it (vbmd_model.infer)
            lr.vbmd_reason = (getattr(estimator, "why", None) or {}).get(lab, "")
        lr.qc += implausible_flags(lr.vbmd_mg_cm3, lab)
        out.append(lr)
    return out


def _craniocaudal(lab: int) -> int:
    from OsteoAIBaseLib.levels import ORDER

    return ORDER.index(lab) if lab in ORDER else 100 + lab


def diagnose(levels: list[LevelResult], diagnostic_levels: str | None = None) -> Diagnosis:
    """Mean vBMD of the diagnostic levels and its ACR category; marks ``used_for_diagnosis`` in place.

    Default: two clean levels among T11-L2, preferring L1 and L2. A level with an excluding QC flag
    (fracture, too small an ROI, cut by the field of view, metal, implausible) never counts.
    """
    by_name = {lv.level: lv for lv in levels}

    def clean(lv: LevelResult) -> bool:
        return lv.vbmd_mg_cm3 is not None and not any(code(f) in EXCLUDING for f in lv.qc)

    if diagnostic_levels:
        preference = [NAMES[x] for x in parse_range(diagnostic_levels)]
        criteria = f"user-chosen levels {diagnostic_levels}"
    else:
        preference = DEFAULT_DIAGNOSTIC_PREFERENCE
        criteria = "mean of two clean levels among T11-L2, preferring L1 and L2 (ACR QCT)"
    chosen = [by_name[n] for n in preference if n in by_name and clean(by_name[n])]
    if not diagnostic_levels:
        chosen = chosen[:N_DIAGNOSTIC_LEVELS]
    excluded = [
        f"{lv.level} ({', '.join(code(f) for f in lv.qc if code(f) in EXCLUDING)})"
        for lv in levels
        if lv.level in preference and not clean(lv)
    ]
    if excluded:
        criteria += "; excluded: " + "; ".join(excluded)
    for lv in levels:
        lv.used_for_diagnosis = lv in chosen
    l1 = by_name.get("L1")
    pick_hu = l1.roi_mean_hu if l1 is not None and l1.roi_mean_hu is not None else None
    diag = Diagnosis(
        vbmd_mg_cm3=None,
        category=None,
        levels=[lv.level for lv in chosen],
        criteria=criteria,
        pickhardt_l1_hu=pick_hu,
        pickhardt_triage=pickhardt_triage(pick_hu) if pick_hu is not None else None,
    )
    if not chosen:
        diag.criteria += "; no clean diagnostic level: no category given"
        return diag
    if len(chosen) < N_DIAGNOSTIC_LEVELS and not diagnostic_levels:
        diag.criteria += f"; only {len(chosen)} clean level available"
    diag.vbmd_mg_cm3 = float(np.mean([lv.vbmd_mg_cm3 for lv in chosen]))
    diag.category = acr_category(diag.vbmd_mg_cm3)
    cis = [lv.vbmd_ci95 for lv in chosen if lv.vbmd_ci95 is not None]
    if len(cis) == len(chosen):
        # Levels share the calibration, so their errors are not independent: average the half-widths.
        half = float(np.mean([(hi - lo) / 2 for lo, hi in cis]))
        diag.vbmd_ci95 = (diag.vbmd_mg_cm3 - half, diag.vbmd_mg_cm3 + half)
        note = near_threshold(diag.vbmd_ci95)
        if note:
            diag.criteria += f"; {note}"
    return diag


def near_threshold_flags(diagnosis) -> list[str]:
    """The scan QC flag for a diagnosis whose interval straddles an ACR boundary (the pipeline and a
    recompute after an ROI edit both add it)."""
    note = near_threshold(diagnosis.vbmd_ci95) if diagnosis.vbmd_ci95 else None
    return [note] if note else []


def near_threshold(ci95: tuple[float, float]) -> str | None:
    """Say so when the interval straddles an ACR boundary: the category is then not settled."""
    lo, hi = ci95
    for t in (ACR_OSTEOPOROSIS_BELOW, ACR_NORMAL_ABOVE):
        if lo < t <= hi:
            return f"near_threshold: the 95% interval {lo:.0f}-{hi:.0f} spans {t:g} mg/cm3; category uncertain"
    return None
