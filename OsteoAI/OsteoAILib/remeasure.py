"""Measure vBMD from trabecular ROIs, one way for every caller.

The pipeline measures its levels here, and so does every re-measure after a user edited the ROIs (the
Slicer module's Recompute through ``mrml/recompute.py``, the web review app): the same vBMD estimator,
the same per-level flags, the same diagnosis and the same scan flags that follow from the numbers. Before
this module the Slicer path used plain calibrated HU and dropped ``near_threshold`` (issue 11).

Core only: numpy arrays and :class:`~OsteoAILib.results.Results`, no scene, no files.

Two entry points:

- :func:`remeasure` measures ROIs under a calibration with a named estimator (``auto``, ``ai``,
  ``calibrated-hu``) and returns levels, diagnosis and flags (what the pipeline calls);
- :func:`remeasure_results` re-measures a finished run's :class:`Results` from edited ROIs, keeping its
  calibration, its estimator and the flags no edit can change (what a review tool calls).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from OsteoAIBaseLib.volume import Volume

from .results import Calibration, Diagnosis, LevelResult, Results

# Per-level flags that measure_levels derives from the ROI itself: a re-measure drops the old ones and
# lets the new measurement set them again.
MEASURED_LEVEL_CODES = ("no_roi", "implausible")
# Scan flags that follow from the numbers or the estimator: re-derived by every re-measure.
DERIVED_SCAN_PREFIXES = ("edited:", "near_threshold", "vbmd_model_")
# Per-level measurements measure_levels adds to ``extra`` (the calibrated-HU estimate beside an AI one): a
# re-measure drops the old ones, so a level the AI no longer judges does not keep a stale number.
MEASURED_EXTRA_PREFIX = "vbmd_calibrated_hu"


@dataclass
class Remeasured:
    levels: list[LevelResult]  # cranial -> caudal
    diagnosis: Diagnosis
    # scan QC flags, in the order the pipeline reports them:
    estimator_flags: list[str] = field(default_factory=list)  # why the AI estimator was not used, if so
    diagnosis_flags: list[str] = field(default_factory=list)  # near_threshold
    vbmd_model: str | None = None  # "vbmd-mlp@2.0" when the AI estimator was loaded, else None

    @property
    def flags(self) -> list[str]:
        return self.estimator_flags + self.diagnosis_flags


def remeasure(
    vol: Volume,
    rois: np.ndarray,
    calibration: Calibration,
    *,
    labels=None,
    level_qc: dict[int, list[str]] | None = None,
    extra: dict[int, dict] | None = None,
    vbmd_method: str = "auto",
    diagnostic_levels: str | None = None,
    canonical: Volume | None = None,
    measure: Callable | None = None,
    diagnose: Callable | None = None,
) -> Remeasured:
    """Measure each ROI label of ``rois`` (int labelmap on ``vol``'s grid) and diagnose.

    ``vbmd_method``: ``"auto"`` (the AI estimator where it is valid, calibrated HU elsewhere, with a flag
    saying why it was not loaded), ``"ai"`` (an :class:`~OsteoAIBaseLib.errors.OsteoAIError` when the model
    cannot be loaded) or ``"calibrated-hu"``. ``canonical`` is ``vol`` on the canonical grid when the
    caller has it (the estimator reads spacing and the patient's age from it); otherwise it is derived.
    ``level_qc``/``extra`` carry per-level flags and measurements made before (ROI box, heights, fracture).
    ``measure``/``diagnose`` default to ``bmd.measure_levels`` / ``bmd.diagnose`` (tests pass stand-ins).
    """
    from . import bmd

    estimator_flags: list[str] = []
    estimator, tag = None, None
    if measure is None:
        estimator, tag = make_estimator(vbmd_method, canonical or _canonical(vol), calibration, estimator_flags)
        measure = bmd.measure_levels
        levels = measure(vol, rois, calibration, labels=labels, level_qc=level_qc, extra=extra, estimator=estimator)
    else:
        levels = measure(vol, rois, calibration, labels=labels, level_qc=level_qc, extra=extra)
    for lv in levels:
        lv.qc = list(dict.fromkeys(lv.qc))
    diagnosis = (diagnose or bmd.diagnose)(levels, diagnostic_levels)
    return Remeasured(
        levels=levels,
        diagnosis=diagnosis,
        estimator_flags=estimator_flags,
        diagnosis_flags=bmd.near_threshold_flags(diagnosis),
        vbmd_model=tag,
    )


def remeasure_results(
    vol: Volume,
    rois: np.ndarray,
    results: Results,
    *,
    note: str = "edited: ROIs edited by the user, vBMD recomputed",
    diagnostic_levels: str | None = None,
    measure: Callable | None = None,
    diagnose: Callable | None = None,
) -> Results:
    """Re-measure a finished run from edited ROIs; updates ``results`` in place and returns it.

    ``vol`` is the CT the run screened and ``rois`` the (edited) ROI labelmap on its grid. The run's
    calibration is kept (nothing is segmented again) and so is its vBMD estimator: a run that used the AI
    model (``software.vbmd_model``) is re-measured with it, with the age and sex the run read from the
    header (an image without a header, e.g. a Slicer volume node, has none). Per-level flags other than
    those the measurement sets itself are kept, and so are ROI boxes and heights; a level whose ROI was
    erased is reported with ``no_roi``. The scan flags that follow from the numbers (``near_threshold``,
    estimator problems) are re-derived and ``note`` (an ``edited:`` flag saying what changed) is added.
    """
    old = {r.label: r for r in results.levels}
    level_qc = {lab: [f for f in r.qc if f.split(":")[0] not in MEASURED_LEVEL_CODES] for lab, r in old.items()}
    extra = {
        lab: {k: v for k, v in r.extra.items() if not k.startswith(MEASURED_EXTRA_PREFIX)} for lab, r in old.items()
    }
    # Every measurement reads ROI voxels only: the block around them gives the same values in the same order,
    # and spares a 512 x 512 CT's full-grid passes (label search, reorientation for the estimator).
    block = nonzero_block(rois)
    if block is not None:
        vol = crop(vol, block)
        rois = rois[block]
    labels = {int(x) for x in np.unique(rois) if x != 0} | set(old)
    canonical = None
    if measure is None and run_vbmd_method(results) != "calibrated-hu":
        canonical = _canonical(vol)
        for key in ("age", "sex"):
            if (results.input or {}).get(key) is not None:
                canonical.meta[key] = results.input[key]
    r = remeasure(
        vol,
        rois,
        results.calibration,
        labels=labels,
        level_qc=level_qc,
        extra=extra,
        vbmd_method=run_vbmd_method(results),
        diagnostic_levels=diagnostic_levels,
        canonical=canonical,
        measure=measure,
        diagnose=diagnose,
    )
    results.levels = r.levels
    results.diagnosis = r.diagnosis
    results.qc = [q for q in results.qc if not q.startswith(DERIVED_SCAN_PREFIXES)] + r.flags + [note]
    return results


def run_vbmd_method(results: Results) -> str:
    """The estimator a re-measure of this run uses: the AI model when the run loaded it, else calibrated HU.

    ``auto`` rather than ``ai``: levels outside the model's training domain keep calibrated HU, as in the run.
    """
    return "auto" if (results.software or {}).get("vbmd_model") else "calibrated-hu"


def make_estimator(vbmd_method: str, canonical: Volume, calibration: Calibration, problems: list[str]):
    """(estimator for ``bmd.measure_levels``, model tag), or (None, None) for calibrated HU.

    Under ``auto`` a model that cannot be loaded adds a ``vbmd_model_unavailable`` flag to ``problems``;
    under ``ai`` it is an error.
    """
    from .options import VBMD_ESTIMATORS

    return VBMD_ESTIMATORS.get(vbmd_method).load()(canonical, calibration, problems)


def nonzero_block(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice, slice] | None:
    """The smallest block (k, j, i slices) holding every nonzero voxel of ``mask``, grown by ``pad`` voxels
    within the grid; None when there is none. Three projections instead of a search of every voxel."""
    along_k = np.flatnonzero(mask.any(axis=(1, 2)))
    if not along_k.size:
        return None
    k0, k1 = int(along_k[0]), int(along_k[-1]) + 1
    plane = mask[k0:k1].any(axis=0)
    j = np.flatnonzero(plane.any(axis=1))
    i = np.flatnonzero(plane.any(axis=0))
    lo = np.maximum(np.array([k0, j[0], i[0]]) - pad, 0)
    hi = np.minimum(np.array([k1, j[-1] + 1, i[-1] + 1]) + pad, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def crop(vol: Volume, block: tuple[slice, slice, slice]) -> Volume:
    """``vol`` cut to ``block`` (a view of its array): same spacing, direction and meta, origin moved."""
    from dataclasses import replace

    corner = [s.start for s in block]
    return replace(vol, array=vol.array[block], origin=tuple(vol.index_to_lps(corner)), meta=dict(vol.meta))


def _canonical(vol: Volume) -> Volume:
    from OsteoAIBaseLib.imageio import to_canonical

    return to_canonical(vol)


# The vBMD estimators of options.VBMD_ESTIMATORS: (canonical, calibration, problems) -> (estimator, model tag).


def estimator_calibrated_hu(canonical: Volume, calibration: Calibration, problems: list[str]):
    return None, None


def estimator_auto(canonical: Volume, calibration: Calibration, problems: list[str]):
    try:
        from .vbmd_model.infer import make_estimator as make_ai
    except ImportError:
        problems.append("vbmd_model_unavailable: the AI vBMD model is not installed; calibrated-HU vBMD reported")
        return None, None
    return make_ai(canonical, calibration, required=False, problems=problems)


def estimator_ai(canonical: Volume, calibration: Calibration, problems: list[str]):
    try:
        from .vbmd_model.infer import make_estimator as make_ai
    except ImportError:
        from OsteoAIBaseLib.errors import OsteoAIError

        raise OsteoAIError("the AI vBMD model is not installed") from None
    return make_ai(canonical, calibration, required=True, problems=problems)
