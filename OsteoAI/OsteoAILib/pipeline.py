"""The screening pipeline: CT in; vertebrae, trabecular ROIs, calibrated vBMD, key images out.

Each stage is a small module of the core; this file only orders them, times them, reports
progress and assembles the :class:`~OsteoAILib.results.Results`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from OsteoAIBaseLib.levels import NAMES
from OsteoAIBaseLib.volume import Volume

from .options import PipelineOptions
from .results import Results

__all__ = ["PipelineOptions", "PipelineOutput", "run_pipeline"]


@dataclass
class PipelineOutput:
    results: Results
    volume: Volume  # the input, on its own grid
    vertebrae: np.ndarray  # int16 VerSe ids on the input grid
    rois: np.ndarray  # int16 VerSe ids on the input grid (trabecular ROIs)
    bodies: np.ndarray | None = None  # vertebral bodies on the input grid
    key_images: list = field(default_factory=list)  # keyimages.KeyImage
    radiomics: list[dict] | None = None
    options: PipelineOptions | None = None  # the settings that produced this output (saved in scenes)


class _Stages:
    """Times the stages and turns them into progress fractions for the caller's callback."""

    WEIGHTS: ClassVar[dict[str, float]] = {
        "load": 0.05,
        "segment": 0.45,
        "roi": 0.1,
        "calibrate": 0.1,
        "vbmd": 0.1,
        "key_images": 0.15,
        "radiomics": 0.05,
    }

    def __init__(self, progress, cancel):
        self.progress, self.cancel = progress, cancel
        self.timing: dict[str, float] = {}
        self.done = 0.0

    @contextmanager
    def stage(self, name: str, message: str):
        from OsteoAIBaseLib.errors import CancelledError

        if self.cancel is not None and self.cancel():
            raise CancelledError("cancelled by the user")
        if self.progress:
            self.progress(self.done, message)
        t0 = time.perf_counter()
        yield self.sub(name)
        self.timing[name] = round(time.perf_counter() - t0, 3)
        self.done = min(1.0, self.done + self.WEIGHTS.get(name, 0.0))

    def sub(self, name):
        """Progress callback for a stage that reports its own fraction."""
        if not self.progress:
            return None
        base, w = self.done, self.WEIGHTS.get(name, 0.0)
        return lambda f, msg: self.progress(base + w * float(np.clip(f, 0, 1)), msg)


def _software(seg_name: str, model_version: str | None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def v(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {
        "osteoai": __version__,
        "segmenter": seg_name,
        "vbmd_model": model_version,
        "python": platform.python_version(),
        **{pkg: v(pkg) for pkg in ("numpy", "SimpleITK", "torch", "monai")},
    }


def _models_used(seg, vbmd_tag: str | None) -> dict:
    """name@version -> {files: {name: sha256}, pinned}: which model files produced this result."""
    used = {}
    if seg.info.get("model_sha256"):
        used[seg.segmenter.replace("model@", "vertebra-seg@")] = {
            "files": seg.info.get("model_files") or {"weights": seg.info["model_sha256"]},
            "pinned": bool(seg.info.get("model_pinned", False)),
        }
    if vbmd_tag:
        from .vbmd_model.infer import default_model

        used[vbmd_tag] = default_model().describe()
    return used


def _input_description(vol: Volume, canonical: Volume, keep_identifiers: bool = False) -> dict:
    """What was screened, without patient name or ID; file name, series description and UID only on request."""
    keep = (
        "source",
        "series",
        "format",
        "modality",
        "kvp",
        "kernel",
        "slice_thickness",
        "ctdivol",
        "manufacturer",
        "model",
        "age",
        "sex",
        "dicom_storage",
    )
    d = {k: vol.meta.get(k) for k in keep if vol.meta.get(k) is not None}
    if keep_identifiers:
        d["identifiers"] = {k: v for k, v in (vol.meta.get("identifiers") or {}).items() if v}
    d.update(
        shape_kji=list(vol.shape),
        spacing_mm=[round(s, 4) for s in vol.spacing],
        orientation=_orientation_code(vol.direction),
    )
    return d


def _orientation_code(direction: np.ndarray) -> str:
    """Three letters, the LPS direction each array axis i, j, k points to (ITK convention, e.g. 'LPS')."""
    letters = ("LR", "PA", "SI")
    code = ""
    for axis in range(3):
        v = direction[:, axis]
        m = int(np.argmax(np.abs(v)))
        code += letters[m][0] if v[m] > 0 else letters[m][1]
    return code


def run_pipeline(
    vol: Volume,
    options: PipelineOptions | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PipelineOutput:
    """Screen one CT volume. ``vol`` is on any grid; every output is returned on that same grid."""
    from OsteoAIBaseLib.imageio import from_canonical, to_canonical
    from OsteoAIBaseLib.levels import parse_range
    from OsteoAISegmentLib.api import segment_spine

    from . import calibration, keyimages, qc, roi
    from .remeasure import remeasure
    from .validate import validate

    opt = options or PipelineOptions()
    st = _Stages(progress, cancel)
    with st.stage("load", "checking the input"):
        canonical = to_canonical(vol)
        scan_qc = validate(canonical)
    with st.stage("segment", f"segmenting vertebrae ({opt.segmenter})") as sub:
        seg = segment_spine(canonical, method=opt.segmenter, device=opt.device, progress=sub, cancel=cancel)
        if opt.levels:
            _keep_levels(seg, parse_range(opt.levels))
        scan_qc += seg.qc
    with st.stage("roi", "placing trabecular ROIs"):
        rois = roi.place_rois(canonical, seg)
    with st.stage("calibrate", f"calibrating ({opt.calibration})"):
        cal = calibration.calibrate(
            canonical, seg, method=opt.calibration, kvp=opt.kvp, phantom_pairs=opt.phantom_pairs
        )
        scan_qc += cal.qc
    with st.stage("vbmd", "estimating vBMD"):
        level_qc, extra = level_context(canonical, seg, rois, cal)
        measured = remeasure(
            canonical,
            rois.labelmap,
            cal,
            labels=seg.levels,
            level_qc=level_qc,
            extra=extra,
            vbmd_method=opt.vbmd_method,
            diagnostic_levels=opt.diagnostic_levels,
            canonical=canonical,
        )
        levels, diagnosis, model_version = measured.levels, measured.diagnosis, measured.vbmd_model
        scan_qc += measured.estimator_flags
        scan_qc += qc.scan_flags(canonical, seg, cal)
        scan_qc += measured.diagnosis_flags
    with st.stage("key_images", "rendering key images"):
        images = keyimages.select_and_render(canonical, seg.vertebrae, rois.labelmap, levels, opt.n_key_images)
    radiomics_rows = None
    if opt.radiomics:
        with st.stage("radiomics", "extracting radiomics features"):
            from .radiomics_features import extract

            radiomics_rows = extract(canonical, rois.labelmap, [lv.label for lv in levels])
    results = Results(
        input=_input_description(vol, canonical, opt.keep_identifiers),
        levels=levels,
        diagnosis=diagnosis,
        calibration=cal,
        qc=_dedupe(scan_qc),
        timing_s=st.timing,
        software={
            **_software(seg.segmenter, model_version),
            "models": _models_used(seg, model_version),
            "segmenter_choice": seg.info.get("segmenter_choice", seg.segmenter),
            "vbmd_choice": _vbmd_choice(opt, cal, model_version, levels, measured.estimator_flags),
        },
        key_images=[im.describe() for im in images],
    )
    if progress:
        progress(1.0, "done")
    return PipelineOutput(
        results=results,
        volume=vol,
        vertebrae=from_canonical(seg.vertebrae, canonical, vol),
        rois=from_canonical(rois.labelmap, canonical, vol),
        bodies=from_canonical(seg.bodies, canonical, vol),
        key_images=images,
        radiomics=radiomics_rows,
        options=opt,
    )


def _keep_levels(seg, wanted: list[int]) -> None:
    drop = [lab for lab in seg.levels if lab not in wanted]
    for arr in (seg.vertebrae, seg.bodies):
        arr[np.isin(arr, drop)] = 0
    seg.levels = [lab for lab in seg.levels if lab in wanted]


def _dedupe(flags: list[str]) -> list[str]:
    return list(dict.fromkeys(flags))


def level_context(canonical, seg, rois, cal) -> tuple[dict[int, list[str]], dict[int, dict]]:
    """Per-level QC flags and measurements (ROI box, body heights, fracture grade) before vBMD: what the
    pipeline hands to the vBMD stage, and what the benchmarks score the flags with."""
    from . import qc

    flags: dict[int, list[str]] = {}
    extra: dict[int, dict] = {}
    partial = set(seg.info.get("partial_levels", []))
    from .label_boxes import label_boxes

    roi_boxes = label_boxes(rois.labelmap)  # each ROI's box, in one pass over the volume
    for lab in seg.levels:
        info = rois.info.get(lab)
        f = list(info.qc) if info is not None else []
        if lab in partial:
            f.append(f"fov_cut: {NAMES.get(lab, lab)} is cut by the edge of the scan")
        f += qc.level_flags(canonical, seg, rois, cal, lab)
        f += _corrupt_roi_flags(canonical, rois.labelmap, lab, roi_boxes[lab - 1] if lab <= len(roi_boxes) else None)
        if any(x.startswith(("fov_cut", "body_cut")) for x in f):
            # Heights of a body the scan cuts are not its heights: no fracture grade from them.
            f = [x for x in f if not x.startswith("fracture")]
        flags[lab] = f
        if info is not None:
            extra[lab] = {
                "roi_box_kji": [list(map(int, c)) for c in info.box_kji],
                "roi_center_kji": [float(c) for c in info.center_kji],
                "heights_mm": {k: round(float(v), 1) for k, v in (info.heights_mm or {}).items()},
            }
    return flags, extra


def _corrupt_roi_flags(canonical, labelmap, lab, box) -> list[str]:
    """A corrupted slice inside a level's ROI makes its number meaningless: 'implausible' excludes it.
    Judged inside the ROI's ``box`` (from ``ndimage.find_objects``) and one slice beyond it either way,
    the neighbours the test compares with; no ROI voxels (``box`` None): nothing to judge."""
    from .validate import corrupt_slices_in_roi

    if box is None:
        return []
    k0, k1 = max(box[0].start - 1, 0), min(box[0].stop + 1, labelmap.shape[0])
    sl = (slice(k0, k1), box[1], box[2])
    bad = [(k + k0, frac) for k, frac in corrupt_slices_in_roi(canonical.array[sl], labelmap[sl] == lab)]
    if not bad:
        return []
    k, frac = max(bad, key=lambda b: b[1])
    return [
        f"implausible: {NAMES.get(lab, lab)} ROI slice k={k} looks corrupted ({100 * frac:.0f}% of its voxels "
        f"jump >500 HU from both neighbour slices)"
    ]


def _vbmd_choice(opt: PipelineOptions, cal, model_tag: str | None, levels, problems: list[str]) -> str:
    """Which vBMD estimator ran and why, e.g. ``"auto -> ai:vbmd-mlp@1.0: ..."`` (per level: ``vbmd_method``)."""
    asked = opt.vbmd_method
    levels = [lv for lv in levels if lv.vbmd_mg_cm3 is not None]
    n_ai = sum(1 for lv in levels if str(lv.vbmd_method).startswith("ai:"))
    if asked == "calibrated-hu":
        return "calibrated-hu: requested"
    if model_tag is None:
        why = next(
            (p.split(": ", 1)[1] for p in problems if p.startswith("vbmd_model_unavailable")),
            "the AI vBMD model is not installed",
        )
        return f"{asked} -> calibrated-hu: {why}"
    if n_ai == 0:
        from .vbmd_model.infer import default_model

        methods = default_model().meta.get("calibration_methods") or []
        if methods and cal.method not in methods:
            why = f"calibration {cal.method!r} is outside the model's training domain ({', '.join(methods)})"
        else:
            why = "no level is inside the model's training domain"
        return f"{asked} -> calibrated-hu: {model_tag} loaded but {why}"
    why = f"the {model_tag} model loaded and checked; it estimated {n_ai} of {len(levels)} measured levels"
    if n_ai < len(levels):
        why += " (the others, outside its training domain, use calibrated-hu)"
    return f"{asked} -> ai:{model_tag}: {why}"
