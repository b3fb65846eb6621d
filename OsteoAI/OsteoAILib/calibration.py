"""Calibration: from the scanner's CT numbers to HA-equivalent vBMD (mg/cm3).

Methods
-------
``internal`` (phantomless)
    Reference tissues found in the scan (``reference_tissues.py``: air outside the body,
    subcutaneous fat, paraspinal muscle, aortic blood) are fitted against their expected CT numbers
    at the scan's kVp (``physics.reference_hu``): ``HU_true = slope * HU_measured + intercept``.
    The vBMD is then the physics model's inverse at that kVp, ``physics.vbmd_from_hu``. Because the
    fit absorbs any linear change of the scanner's HU scale, vBMD does not move when the scan is
    rescaled (``HU' = a HU + b``). Outlier resistance: a weighted least-squares fit, then the one
    reference whose removal most improves the fit is dropped when its residual exceeds
    ``OUTLIER_HU`` (a muscle with fatty infiltration, an enhanced aorta missed by the contrast
    check...), provided at least three references remain; air, the anchor of the HU scale, is
    never dropped. Beam-hardening cupping (HU lower towards the body's centre) is fitted as a
    third term, ``measured = a * true + b - c * depth`` with depth = 1 - r^2 over the body's
    outline, from the references measured at several depths, but only when all four references
    (the deep aortic blood included) agree with it; the deficit at the vertebral bodies' depth is
    folded into the intercept.
``phantom``
    User-given (rod HU, rod density mg/cm3 HA) pairs; a straight line HU = a + b * density.
``none``
    No scanner correction: the scan's HU are taken as true and converted with the physics model at
    the scan's kVp (120 kVp when unknown): vBMD = (HU - trabecular_hu(0)) / mineral_hu_per_mg at
    that kVp and marrow fat fraction; the calibration's notes write out the exact numbers used.
    Flagged ``uncalibrated``.
``auto``
    ``internal``; when its references cannot be found or fit poorly, ``none`` with a QC flag.

Marrow fat: yellow marrow lowers the trabecular HU at equal mineral. The fat fraction is taken
from the patient's age when known (``physics.marrow_fat_fraction_for_age``), else the standard
fraction; the choice is written in the calibration's notes and baked into ``hu_at_zero_mg_cm3`` and
``hu_per_mg_cm3`` (vBMD = (slope * HU + intercept - hu_at_zero) / hu_per_mg).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.volume import Volume

from . import physics
from .reference_table import REFERENCE_NAMES, UNENHANCED, WEIGHTS
from .reference_tissues import measure_voxels, reference_voxels
from .results import Calibration

DEFAULT_KVP = 120.0
OUTLIER_HU = 12.0  # a reference further than this from the fit of the others is left out
POOR_FIT_RMS_HU = 15.0
SLOPE_RANGE = (0.8, 1.25)  # scanners are calibrated to water/air: a larger correction is suspicious
CUPPING_MAX_HU = 80.0  # beam-hardening deficit at the body centre, measured HU, at most
MIN_DEPTH_SPREAD = 0.15  # depth SD over the reference voxels needed to see cupping
CUPPING_MAX_RMS_HU = 6.0  # a cupping fit is kept only if it explains every reference this well
# Soft tissues span ~150-250 HU, so their fit extrapolated 1000 HU down to air carries a few % of slope
# error: clipped air implied up to this far above the clip is still consistent.
CLIP_TOLERANCE_HU = 100.0
DEFAULT_SPINE_DEPTH = 0.9  # 1 - r^2 of the vertebral bodies when they cannot be located
CONTRAST_ABOVE_HU = 150.0  # calibrated aortic blood above this: iodinated contrast


def resolve_kvp(vol: Volume, kvp: float | None = None) -> tuple[float, str, list[str]]:
    """(kVp, source, qc flags): the user's value, else the volume's tag, else 120 with a flag."""
    if kvp is not None:
        return float(kvp), "user", []
    meta = vol.meta or {}
    val, source = meta.get("kvp"), meta.get("kvp_source")
    if val is None:
        tags = meta.get("tags") or {}
        val = tags.get("kvp", tags.get("KVP"))
        source = source or "sidecar"
    if val is not None:
        try:
            v = float(val)
        except (TypeError, ValueError):
            v = None
        if v is not None and 60.0 <= v <= 150.0:
            if source is None:
                source = "dicom" if str(meta.get("format", "")).lower() == "dicom" else "sidecar"
            return v, str(source), []
        return DEFAULT_KVP, "default", [f"kvp_unknown: tube voltage {val!r} is outside 60-150 kV; 120 kV assumed"]
    return DEFAULT_KVP, "default", ["kvp_unknown: tube voltage not recorded; 120 kV assumed"]


def marrow_fat_fraction(vol: Volume) -> tuple[float, str]:
    age = (vol.meta or {}).get("age")
    try:
        age = float(age) if age is not None else None
    except (TypeError, ValueError):
        age = None
    if age is not None and 0 < age < 120:
        return physics.marrow_fat_fraction_for_age(age), f"age {age:g} y"
    return physics.STANDARD_MARROW_FAT_FRACTION, "standard (age unknown)"


def _wls(x, y, w) -> tuple[float, float]:
    x, y, w = (np.asarray(v, dtype=float) for v in (x, y, w))
    if x.size == 2 or np.ptp(x) == 0:
        if np.ptp(x) == 0:
            return 1.0, float(np.average(y - x, weights=w))
    A = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
    (s, c), *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    return float(s), float(c)


def _fit_rows(E, M, D, W, cupping: bool) -> tuple[float, float, float]:
    """WLS of M = a E + b - c D (c: cupping at depth 1, measured units; 0 when not ``cupping``)."""
    cols = [E, np.ones_like(E)] + ([-D] if cupping else [])
    X = np.stack(cols, axis=1) * np.sqrt(W)[:, None]
    sol, *_ = np.linalg.lstsq(X, M * np.sqrt(W), rcond=None)
    a, b = float(sol[0]), float(sol[1])
    c = float(sol[2]) if cupping else 0.0
    if cupping and not 0.0 <= c <= CUPPING_MAX_HU:
        # Cupping lowers the centre: a negative or huge term is noise or anatomy, not physics.
        c = float(np.clip(c, 0.0, CUPPING_MAX_HU))
        X2 = np.stack([E, np.ones_like(E)], axis=1) * np.sqrt(W)[:, None]
        (a, b), *_ = np.linalg.lstsq(X2, (M + c * D) * np.sqrt(W), rcond=None)
    return float(a), float(b), c


def robust_fit(points: dict[str, tuple[float, float, float]], bins: dict[str, list] | None = None) -> dict:
    """Fit HU_true = slope * measured + intercept (+ cupping * depth) over the references.

    ``points``: name -> (measured, expected, weight). ``bins`` (optional): name -> [(depth, measured,
    n_voxels), ...], the reference measured at several depths (0 at the skin, 1 at the body's
    centre); when air, fat, muscle and blood all agree with it (and better than with the straight
    line), a beam-hardening cupping term ``measured = a * true + b - c * depth`` is fitted as
    well. Returns slope (1/a),
    intercept (-b/a, at depth 0), cupping_hu (c/a, true HU lost at depth 1), rms (of the kept
    references), used names, dropped {name: why}, residuals {name: HU}.
    """
    names = list(points)
    if len(names) < 2:
        raise ValueError("at least two references are needed")
    rows = []  # (tissue index, expected, measured, depth, weight)
    for t, n in enumerate(names):
        meas, exp, wt = points[n]
        nb = (bins or {}).get(n) or [(0.0, meas, 1)]
        total = sum(max(b[2], 1) for b in nb)
        rows += [(t, exp, m, d, wt * max(c, 1) / total) for d, m, c in nb]
    T, E, M, D, W = (np.array(v, dtype=float) for v in zip(*rows, strict=True))
    keep = np.ones(len(names), bool)
    dropped: dict[str, str] = {}

    def fit(mask_t, cup=False):
        r = mask_t[T.astype(int)]
        return _fit_rows(E[r], M[r], D[r], W[r], cup)

    def tissue_residuals(params):
        a, b, c = params
        res_rows = (M - (a * E + b - c * D)) / a  # in true HU
        return np.array([np.average(res_rows[T == t], weights=W[T == t]) for t in range(len(names))])

    params = fit(keep)
    if len(names) >= 4:
        # Leave-one-out: the reference farthest from the fit through the others. Air is never a
        # candidate: it is -1000 HU by definition of the scale, and its leverage would let the soft
        # tissues' biological spread (e.g. fatty paraspinal muscle) push it out.
        best = None
        for i in range(len(names)):
            if names[i] == "air":
                continue
            m = keep.copy()
            m[i] = False
            res = tissue_residuals(fit(m))
            r_out = abs(res[i])
            r_in = np.sqrt(np.mean(res[m] ** 2))
            if best is None or r_out - r_in > best[0]:
                best = (r_out - r_in, i, r_out)
        if best is not None and best[2] > OUTLIER_HU:
            i = best[1]
            keep[i] = False
            dropped[names[i]] = f"outlier: {best[2]:.0f} HU from the fit of the other references"
            params = fit(keep)
    wt = np.array([points[n][2] for n in names])

    def rms_of(params, mask_t):
        return float(np.sqrt(np.average(tissue_residuals(params)[mask_t] ** 2, weights=wt[mask_t])))

    # Cupping is only believed when every reference, the deep aortic blood included, agrees with
    # it: fatty paraspinal muscle alone must not pass for beam hardening (it is dropped instead).
    everything = np.ones(len(names), bool)
    if bins and set(REFERENCE_NAMES) <= set(names) and np.sqrt(np.cov(D, aweights=W)) > MIN_DEPTH_SPREAD:
        cup_params = fit(everything, cup=True)
        rms_cup = rms_of(cup_params, everything)
        if cup_params[2] > 0 and rms_cup <= CUPPING_MAX_RMS_HU and rms_cup < rms_of(fit(everything), everything):
            params, keep, dropped = cup_params, everything, {}
    a, b, c = params
    res = tissue_residuals(params)
    rms = rms_of(params, keep)
    return {
        "slope": 1.0 / a,
        "intercept": -b / a,
        "cupping_hu": c / a,
        "rms": rms,
        "used": [n for n, k in zip(names, keep, strict=True) if k],
        "dropped": dropped,
        "residuals": {n: float(r) for n, r in zip(names, res, strict=True)},
    }


def detect_contrast(references: dict, kvp: float = DEFAULT_KVP) -> tuple[bool, str]:
    """Is the aortic blood iodine-enhanced? Calibrates blood with the other references (or takes
    it as measured when they are missing) and compares it with 150 HU."""
    blood = references.get("blood") or {}
    b = blood.get("measured_hu")
    if b is None:
        return False, "no aortic ROI: contrast could not be checked"
    expected = physics.reference_hu(kvp)
    pts = {
        n: (references[n]["measured_hu"], expected[n], WEIGHTS[n])
        for n in UNENHANCED
        if n in references and references[n].get("measured_hu") is not None
    }
    cal_b = float(b)
    if len(pts) >= 2:
        x = np.array([p[0] for p in pts.values()])
        if np.ptp(x) > 50:
            s, c = _wls(x, [p[1] for p in pts.values()], [p[2] for p in pts.values()])
            cal_b = s * b + c
    if cal_b > CONTRAST_ABOVE_HU:
        return True, (
            f"contrast: aortic blood reads {cal_b:.0f} HU (unenhanced blood ~{expected['blood']:.0f} HU); "
            "iodinated contrast raises trabecular HU, vBMD may be overestimated"
        )
    return False, f"aortic blood {cal_b:.0f} HU: no contrast enhancement"


def _linear_density(cal: Calibration, fat_fraction: float) -> None:
    cal.hu_at_zero_mg_cm3 = float(physics.trabecular_hu(0.0, fat_fraction, cal.kvp))
    cal.hu_per_mg_cm3 = float(physics.mineral_hu_per_mg(cal.kvp, fat_fraction))


def _phantom(pairs, kvp, source, qc) -> Calibration:
    try:
        arr = np.asarray(pairs, dtype=float).reshape(-1, 2)
    except (TypeError, ValueError):
        raise InputError("phantom calibration needs (rod HU, rod density mg/cm3) pairs") from None
    if arr.shape[0] < 2 or np.ptp(arr[:, 1]) <= 0 or not np.all(np.isfinite(arr)):
        raise InputError("phantom calibration needs at least two rods of different known density")
    b1, b0 = np.polyfit(arr[:, 1], arr[:, 0], 1)
    if b1 <= 0:
        raise InputError("phantom rods: HU does not increase with density; check the (HU, density) pairs")
    res = arr[:, 0] - (b0 + b1 * arr[:, 1])
    rms = float(np.sqrt(np.mean(res**2))) if arr.shape[0] > 2 else 0.0
    cal = Calibration(
        method="phantom",
        slope=1.0,
        intercept=0.0,
        residual_hu=rms,
        kvp=kvp,
        kvp_source=source,
        hu_per_mg_cm3=float(b1),
        hu_at_zero_mg_cm3=float(b0),
        qc=list(qc),
    )
    cal.references = {
        f"rod_{i + 1}": {"measured_hu": float(h), "expected_mg_cm3": float(d), "residual_hu": float(r), "used": True}
        for i, ((h, d), r) in enumerate(zip(arr, res, strict=True))
    }
    cal.notes = f"phantom: HU = {b0:.1f} + {b1:.3f} * density over {arr.shape[0]} rods"
    if rms > 10.0:
        cal.qc.append(f"calib_fit: phantom rods deviate {rms:.0f} HU RMS from a straight line")
    return cal


def _none(kvp, source, qc, fat_fraction, fat_why, why="") -> Calibration:
    cal = Calibration(
        method="none", slope=1.0, intercept=0.0, residual_hu=None, kvp=kvp, kvp_source=source, qc=list(qc)
    )
    _linear_density(cal, fat_fraction)
    cal.qc.append(
        "uncalibrated: "
        + (why or "no scanner calibration")
        + f"; standard conversion at {kvp:g} kV, vBMD may be off by the scanner's HU bias"
    )
    cal.notes = (
        f"none: HU taken as true; vBMD = (HU {-cal.hu_at_zero_mg_cm3:+.1f}) / {cal.hu_per_mg_cm3:.3f} "
        f"(physics model at {kvp:g} kV, marrow fat {fat_fraction:.2f}, {fat_why})"
    )
    return cal


def _internal(vol, seg, kvp, source, qc, fat_fraction, fat_why, cupping=True) -> tuple[Calibration, bool]:
    """(calibration, ok): ok is False when the fit cannot be trusted."""
    expected = physics.reference_hu(kvp)
    flags = list(qc)
    try:
        vox = reference_voxels(vol, seg)
        refs = measure_voxels(vol, vox)
    except (ValueError, IndexError, MemoryError) as e:
        # Unusual anatomy must not stop the screening: report it and let the caller fall back.
        cal = Calibration(method="internal", kvp=kvp, kvp_source=source, qc=flags)
        cal.qc.append(f"calib_refs: reference tissue search failed ({type(e).__name__}: {str(e)[:120]})")
        cal.references = {
            n: {
                "measured_hu": None,
                "expected_hu": float(expected[n]),
                "n_voxels": 0,
                "used": False,
                "why": "search failed",
            }
            for n in REFERENCE_NAMES
        }
        return cal, False
    is_contrast, contrast_msg = detect_contrast(refs, kvp)
    table = {}
    points = {}
    for n in REFERENCE_NAMES:
        r = dict(refs[n])
        r["expected_hu"] = float(expected[n])
        if r["used"]:
            if n == "blood" and is_contrast:
                r["used"], r["why"] = False, "left out: contrast-enhanced"
            else:
                w = WEIGHTS[n] * (0.5 if "clipped" in r["why"] else 1.0)
                points[n] = (float(r["measured_hu"]), float(expected[n]), w)
        table[n] = r
    if is_contrast:
        flags.append(contrast_msg)
    cal = Calibration(method="internal", kvp=kvp, kvp_source=source, qc=flags)
    ok = True
    spans_air = "air" in points
    # Air present but clipped by the scanner (mostly below its stored minimum) says the scan's
    # HU scale is off, the case where taking HU as true is worst: two soft tissues then fix both
    # slope and offset (a linear HU change moves them with the bone, so vBMD stays put), and the
    # clip bounds the air level the fit implies. Without any air (tight crop) there is no such
    # check, and a fat-muscle line alone is too uncertain in scale to trust.
    air_clip = table["air"].get("clipped_below_hu")
    if len(points) < 2 or (len(points) == 2 and not spans_air and air_clip is None):
        missing = ", ".join(f"{n} ({table[n]['why']})" for n in REFERENCE_NAMES if n not in points)
        cal.qc.append(f"calib_refs: only {len(points)} usable reference tissue(s); missing {missing}")
        cal.references = table
        return cal, False
    bins = {n: refs[n].get("depth_bins") for n in points} if cupping else None
    fit = robust_fit(points, bins)
    # Cupping: the vertebral bodies sit deep in the body, where beam hardening lowers HU most; the
    # deficit at their depth is folded into the intercept (all levels share about the same depth).
    spine_depth = vox.get("_spine_depth")
    if spine_depth is None:
        spine_depth = DEFAULT_SPINE_DEPTH
    cup_at_spine = fit["cupping_hu"] * spine_depth
    cal.slope, cal.intercept, cal.residual_hu = fit["slope"], fit["intercept"] + cup_at_spine, fit["rms"]
    for n in REFERENCE_NAMES:
        r = table[n]
        if n in points:
            at_depth = fit["cupping_hu"] * float(r.get("depth", 0.0))
            r["calibrated_hu"] = float(fit["slope"] * r["measured_hu"] + fit["intercept"] + at_depth)
            r["residual_hu"] = fit["residuals"][n]
            r["used"] = n in fit["used"]
            r["why"] = "used in the fit" if r["used"] else "left out: " + fit["dropped"][n]
    cal.references = table
    _linear_density(cal, fat_fraction)
    if len(fit["used"]) < 3:
        cal.qc.append(f"calib_refs: only {len(fit['used'])} references in the fit ({', '.join(fit['used'])})")
    if not SLOPE_RANGE[0] <= cal.slope <= SLOPE_RANGE[1]:
        cal.qc.append(f"calib_slope: fitted slope {cal.slope:.3f} is outside {SLOPE_RANGE[0]}-{SLOPE_RANGE[1]}")
        ok = False
    if air_clip is not None and not spans_air:
        air_implied = (float(expected["air"]) - cal.intercept) / cal.slope
        if air_implied > air_clip + CLIP_TOLERANCE_HU:
            cal.qc.append(
                f"calib_fit: the fit puts outside air at {air_implied:.0f} HU, but the scan clips air "
                f"below {air_clip:.0f} HU"
            )
            ok = False
    if cal.residual_hu > POOR_FIT_RMS_HU:
        cal.qc.append(f"calib_fit: reference tissues deviate {cal.residual_hu:.0f} HU RMS from the fit")
        ok = False
    cal.notes = (
        f"internal: HU_true = {cal.slope:.4f} * HU + {cal.intercept:.1f} over {', '.join(fit['used'])}"
        + (f" (left out: {', '.join(fit['dropped'])})" if fit["dropped"] else "")
        + (
            f"; beam-hardening cupping {fit['cupping_hu']:.1f} HU at the body centre, {cup_at_spine:.1f} HU "
            f"at the spine's depth {spine_depth:.2f} (in the intercept)"
            if fit["cupping_hu"] > 0
            else ""
        )
        + f"; residual {cal.residual_hu:.1f} HU RMS; expected HU at {kvp:g} kV from physics.reference_hu;"
        f" marrow fat {fat_fraction:.2f} ({fat_why})"
    )
    return cal, ok


@dataclass
class CalibrationInput:
    """What every calibration method receives (``calibrate`` resolves the kVp and the marrow fat once)."""

    vol: Volume  # canonical CT, HU
    seg: object  # SpineSegmentation or None
    kvp: float
    kvp_source: str
    qc: list[str]  # flags so far (kVp)
    fat_fraction: float | None
    fat_why: str
    phantom_pairs: list[tuple[float, float]] | None = None


def calibrate(vol: Volume, seg=None, method: str = "auto", kvp: float | None = None, phantom_pairs=None) -> Calibration:
    """Calibrate a canonical CT volume (HU). ``seg`` (a SpineSegmentation) locates the spine for the
    paraspinal muscle and aorta references; without it those are searched more crudely. ``method`` names an
    entry of ``options.CALIBRATION_METHODS``, whose function (``CalibrationInput -> Calibration``) runs."""
    from .options import CALIBRATION_METHODS

    run = CALIBRATION_METHODS.get(method).load()  # InputError naming the registered methods
    kvp_val, source, qc = resolve_kvp(vol, kvp)
    ff, ff_why = marrow_fat_fraction(vol)
    return run(CalibrationInput(vol, seg, kvp_val, source, qc, ff, ff_why, phantom_pairs))


def calibrate_phantom(c: CalibrationInput) -> Calibration:
    """Rods of an in-scan phantom (``phantom_pairs``: rod HU, rod density mg/cm3)."""
    if not c.phantom_pairs:
        raise InputError("phantom calibration needs rod (HU, density mg/cm3) pairs")
    return _phantom(c.phantom_pairs, c.kvp, c.kvp_source, c.qc)


def calibrate_none(c: CalibrationInput) -> Calibration:
    """The scanner's HU as they are."""
    return _none(c.kvp, c.kvp_source, c.qc, c.fat_fraction, c.fat_why)


def calibrate_internal(c: CalibrationInput) -> Calibration:
    """Air, fat, muscle and blood of this scan (``auto`` and ``internal``): when the fit cannot be trusted, no
    correction, but what was measured and why is kept."""
    cal, ok = _internal(c.vol, c.seg, c.kvp, c.kvp_source, c.qc, c.fat_fraction, c.fat_why)
    if ok:
        return cal
    fallback = _none(
        c.kvp,
        c.kvp_source,
        cal.qc,
        c.fat_fraction,
        c.fat_why,
        why=f"internal calibration not trusted ({'; '.join(f.split(':')[0] for f in cal.qc[len(c.qc) :])})",
    )
    fallback.references = cal.references
    fallback.notes += f" | rejected internal fit: slope {cal.slope:.3f}, intercept {cal.intercept:.1f}"
    return fallback


def hu_to_vbmd(hu_measured, cal: Calibration, marrow_fat_fraction: float | None = None):
    """Measured trabecular HU (scalar or array) -> vBMD mg/cm3 HA through ``cal``."""
    h = np.asarray(hu_measured, dtype=float)
    if cal.method == "phantom":
        out = (h - cal.hu_at_zero_mg_cm3) / cal.hu_per_mg_cm3
    else:
        true = cal.slope * h + cal.intercept
        if marrow_fat_fraction is not None or cal.hu_per_mg_cm3 is None or cal.hu_at_zero_mg_cm3 is None:
            ff = physics.STANDARD_MARROW_FAT_FRACTION if marrow_fat_fraction is None else float(marrow_fat_fraction)
            h0 = physics.trabecular_hu(0.0, ff, cal.kvp)
            sens = physics.mineral_hu_per_mg(cal.kvp, ff)
        else:
            h0, sens = cal.hu_at_zero_mg_cm3, cal.hu_per_mg_cm3
        out = (true - h0) / sens
    return float(out) if out.ndim == 0 else out
