"""vBMD recomputed from ROI segments and boxes the user edited in Slicer, keeping the calibration."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from OsteoAIBaseLib import levels as lv

from ..results import Results
from .constants import ATTR
from .roi_boxes import _box_state, box_mask, box_moved, roi_boxes_of
from .segmentations import _craniocaudal, segmentation_to_labelmap, set_segment_mask
from .tables import add_results_table, add_results_text
from .volumes import ijk_to_ras, volume_from_node


def recompute_from_segmentation(
    scene,
    volume_node,
    roi_seg_node,
    results: Results,
    roi_boxes: dict | None = None,
    vertebrae_seg_node=None,
    table_node=None,
    text_node=None,
    diagnostic_levels: str | None = None,
    measure: Callable | None = None,
    diagnose: Callable | None = None,
) -> Results:
    """Re-measure every level from the (edited) ROI segments and moved ROI boxes; update the nodes.

    A moved/resized box replaces its level's ROI by the voxels inside the box that belong to that
    vertebra (whole box when no vertebra segmentation is given); the segment is updated to match so
    what the user sees is what is measured. Calibration is kept: no segmentation runs again.
    ``measure``/``diagnose`` default to ``bmd.measure_levels`` / ``bmd.diagnose``, with the vBMD estimator the
    automatic run used (an ROI edit must not silently switch the AI estimate to calibrated HU).
    """
    from .. import bmd

    vol = volume_from_node(volume_node)
    problems: list[str] = []
    if measure is None:
        estimator = _estimator_of_run(vol, results, problems)

        def measure(*args, **kwargs):
            return bmd.measure_levels(*args, estimator=estimator, **kwargs)
    diagnose = diagnose or bmd.diagnose
    rois = segmentation_to_labelmap(scene, roi_seg_node, volume_node)
    boxes = roi_boxes if roi_boxes is not None else roi_boxes_of(scene, roi_seg_node)
    moved = []
    vert = None
    for level, box in boxes.items():
        if not box_moved(box):
            continue
        if vert is None and vertebrae_seg_node is not None:
            vert = segmentation_to_labelmap(scene, vertebrae_seg_node, volume_node)
        lab = int(box.GetAttribute(ATTR + "label") or lv.IDS[level])
        inside = box_mask(box, ijk_to_ras(volume_node), vol.shape)
        if vert is not None:
            inside &= vert == lab
        rois[rois == lab] = 0
        rois[inside & (rois == 0)] = lab
        set_segment_mask(roi_seg_node, lab, rois == lab, volume_node)
        box.SetAttribute(ATTR + "originalBox", json.dumps(_box_state(box)))
        moved.append(level)

    old = {r.label: r for r in results.levels}
    measured_codes = {"no_roi", "implausible"}  # flags measure_levels sets itself
    level_qc = {lab: [f for f in r.qc if f.split(":")[0] not in measured_codes] for lab, r in old.items()}
    extra = {lab: dict(r.extra) for lab, r in old.items()}
    labels = sorted(set(int(x) for x in np.unique(rois) if x != 0) | set(old), key=_craniocaudal)
    new_levels = measure(vol, rois, results.calibration, labels=labels, level_qc=level_qc, extra=extra)
    diagnosis = diagnose(new_levels, diagnostic_levels)
    results.levels = new_levels
    results.diagnosis = diagnosis
    note = "edited: ROIs edited in 3D Slicer, vBMD recomputed"
    if moved:
        note += f" (boxes moved: {', '.join(moved)})"
    # flags that follow from the numbers are re-derived; the rest of the scan QC stays as it was
    results.qc = [q for q in results.qc if not q.startswith(("edited:", "near_threshold", "vbmd_model_"))]
    results.qc += problems + bmd.near_threshold_flags(diagnosis) + [note]
    if table_node is not None:
        add_results_table(scene, results, ref_volume_node=volume_node, table_node=table_node)
    if text_node is not None:
        add_results_text(scene, results, text_node.GetName(), volume_node, text_node=text_node)
    return results


def _estimator_of_run(vol, results: Results, problems: list[str]):
    """The AI estimator when the automatic run used one (``software.vbmd_model``), else None."""
    if not (results.software or {}).get("vbmd_model"):
        return None
    try:
        from OsteoAIBaseLib.imageio import to_canonical

        from ..vbmd_model.infer import make_estimator
    except ImportError:
        problems.append("vbmd_model_unavailable: the AI vBMD model is not installed; calibrated-HU vBMD reported")
        return None
    canonical = to_canonical(vol)
    # a volume node has no DICOM header: the age the run read (marrow fat) comes from the results
    for key in ("age", "sex"):
        if (results.input or {}).get(key) is not None:
            canonical.meta[key] = results.input[key]
    estimator, _tag = make_estimator(canonical, results.calibration, required=False, problems=problems)
    return estimator
