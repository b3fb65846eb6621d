"""How far the digital phantom is from real CT, in the statistics the vBMD model sees.

One row per measured level, from a scan that went through the real pipeline (or a phantom that went
through the same stages): the model's features (:mod:`.features`), whether the model's domain check
accepts them and, if not, which feature; plus statistics the model does not read directly but that
shape what it reads: the spatial correlation of the ROI's grey values (trabecular texture and the
reconstruction kernel's noise texture together) and the body's size at the level.

Pure numpy on :class:`Volume` arrays; the benchmark ``Testing/benchmarks/phantom_realism.py`` prints
the comparison and the realism tests check it on ``../shared/data`` when it is there.
"""

from __future__ import annotations

import math

import numpy as np

from .features import FEATURE_NAMES, volume_level_features

# Features compared in the realism table (a readable subset of FEATURE_NAMES plus the extra statistics).
TABLE_FEATURES = (
    "plain_vbmd",
    "cal_mean_hu",
    "cal_median_hu",
    "cal_sd_hu",
    "cal_skew",
    "noise_sd_hu",
    "roi_acf1",
    "roi_corr_mm",
    "pixel_mm",
    "slice_thickness_mm",
    "log_roi_volume_mm3",
    "body_diameter_mm",
    "ref_fat_residual_hu",
    "ref_muscle_residual_hu",
    "ref_blood_residual_hu",
    "ref_air_residual_hu",
    "cal_residual_hu",
    "blood_enhancement_hu",
    "kvp",
    "age_years",
)


def roi_texture(arr: np.ndarray, mask: np.ndarray, spacing) -> tuple[float, float]:
    """(lag-1 in-plane autocorrelation, correlation length in mm) of the grey values inside ``mask``.

    The autocorrelation is taken over neighbouring voxel pairs that both lie in the ROI (along i and
    j, one voxel apart); the correlation length is the lag at which it falls to 1/2, assuming an
    exponential fall-off (lag_mm * ln 2 / -ln acf1). Texture and kernel noise are both in it.
    """
    a = np.asarray(arr, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if m.sum() < 20:
        return float("nan"), float("nan")
    mean = a[m].mean()
    var = a[m].var()
    if var <= 0:
        return 1.0, float("inf")
    acfs, lags = [], []
    for axis, lag_mm in ((2, spacing[0]), (1, spacing[1])):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        both = m[tuple(lo)] & m[tuple(hi)]
        if both.sum() < 10:
            continue
        x = a[tuple(lo)][both] - mean
        y = a[tuple(hi)][both] - mean
        acfs.append(float(np.mean(x * y) / var))
        lags.append(float(lag_mm))
    if not acfs:
        return float("nan"), float("nan")
    acf = float(np.mean(acfs))
    lag = float(np.mean(lags))
    corr = lag * math.log(2.0) / -math.log(acf) if 0 < acf < 1 else (float("inf") if acf >= 1 else 0.0)
    return acf, corr


def body_diameter_mm(arr: np.ndarray, k: int, spacing, air_hu: float = -500.0) -> float:
    """Equivalent circular diameter (mm) of everything denser than ``air_hu`` on axial slice ``k``
    (the patient plus the table; the table adds a few cm2 at most)."""
    sl = np.asarray(arr[int(k)]) > air_hu
    area = float(sl.sum()) * spacing[0] * spacing[1]
    return 2.0 * math.sqrt(area / math.pi)


def level_rows(
    canonical, roi_labelmap: np.ndarray, cal, labels, model=None, level_qc: dict | None = None, source: str = ""
) -> list[dict]:
    """One dict per level with an ROI: ``features`` {name: value}, ``domain`` (None = inside, else why),
    ``excluded`` (an excluding QC flag), ``level`` and ``source``.

    Features are computed exactly as the pipeline's estimator computes them (same noise, spacing, age).
    """
    from OsteoAIBaseLib.levels import NAMES

    from ..qc import EXCLUDING
    from ..qc import code as qc_code

    arr = np.asarray(canonical.array)
    rois = np.asarray(roi_labelmap)
    age = canonical.meta.get("age")
    age = float(age) if isinstance(age, (int, float)) else None
    feats = volume_level_features(canonical, rois, labels, cal, age=age)
    excl = EXCLUDING
    out = []
    for lab, f in feats.items():
        m = rois == lab
        kk = np.nonzero(m.any(axis=(1, 2)))[0]
        k0, k1 = int(kk.min()), int(kk.max()) + 1
        acf, corr = roi_texture(arr[k0:k1], m[k0:k1], canonical.spacing)
        row = {name: float(v) for name, v in zip(FEATURE_NAMES, f, strict=True)}
        row.update(
            roi_acf1=acf, roi_corr_mm=corr, body_diameter_mm=body_diameter_mm(arr, (k0 + k1) // 2, canonical.spacing)
        )
        flags = list((level_qc or {}).get(lab, []))
        out.append(
            {
                "source": source,
                "level": NAMES.get(lab, str(lab)),
                "label": int(lab),
                "features": row,
                "vector": f,
                "domain": model.in_domain(f) if model is not None else None,
                "excluded": [qc_code(x) for x in flags if qc_code(x) in excl],
            }
        )
    return out


def pipeline_rows(vol, model=None, source: str = "", options=None) -> tuple[list[dict], object]:
    """Run the pipeline on ``vol`` once; (level rows as :func:`level_rows`, the PipelineOutput)."""
    from OsteoAIBaseLib.imageio import to_canonical

    from ..pipeline import PipelineOptions, run_pipeline

    out = run_pipeline(vol, options or PipelineOptions())
    canonical = to_canonical(vol)
    rois = to_canonical(vol.with_array(out.rois.astype(np.int16))).array
    qc = {lv.label: list(lv.qc) for lv in out.results.levels}
    labels = [lv.label for lv in out.results.levels if lv.roi_mean_hu is not None]
    return level_rows(canonical, rois, out.results.calibration, labels, model, qc, source), out


def summarise(real: list[dict], phantom: list[dict], names=TABLE_FEATURES) -> list[dict]:
    """Per feature: real and phantom 5-95% range and the fraction of real levels outside the phantom's
    full (min-max) range."""
    out = []
    for name in names:
        r = np.array([x["features"][name] for x in real], dtype=float)
        p = np.array([x["features"][name] for x in phantom], dtype=float)
        r, p = r[np.isfinite(r)], p[np.isfinite(p)]
        if r.size == 0 or p.size == 0:
            continue
        lo, hi = float(p.min()), float(p.max())
        out.append(
            {
                "feature": name,
                "n_real": int(r.size),
                "n_phantom": int(p.size),
                "real": (float(r.min()), float(np.median(r)), float(r.max())),
                "phantom": (lo, float(np.median(p)), hi),
                "outside": float(np.mean((r < lo) | (r > hi))),
            }
        )
    return out


def format_table(rows: list[dict]) -> str:
    head = f"{'feature':24}{'real min / median / max':>30}   {'phantom min / median / max':>30}"
    lines = [f"{head}  {'real outside':>12}"]
    for r in rows:
        a, b = r["real"], r["phantom"]
        lines.append(
            f"{r['feature']:24}{a[0]:10.3g}{a[1]:10.3g}{a[2]:10.3g}   {b[0]:10.3g}{b[1]:10.3g}{b[2]:10.3g}"
            f"  {100 * r['outside']:11.0f}%"
        )
    return "\n".join(lines)
