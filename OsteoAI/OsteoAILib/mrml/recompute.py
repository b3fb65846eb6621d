"""vBMD recomputed from ROI segments and boxes the user edited in Slicer: the scene side of
:mod:`OsteoAILib.remeasure` (edited nodes -> ROI labelmap -> the core re-measure -> updated nodes)."""

from __future__ import annotations

import json
from collections.abc import Callable

from OsteoAIBaseLib import levels as lv

from ..results import Results
from .constants import ATTR
from .roi_boxes import _box_state, box_mask, box_moved, roi_boxes_of
from .segmentations import segmentation_to_labelmap, set_segment_mask
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

    A moved/resized box replaces its level's ROI by the voxels inside the box that lie in that
    vertebra's marrow, deeper than the cortical margin (whole box when no vertebra segmentation is
    given): a box pushed onto an endplate does not measure the endplate. The segment is updated to match so
    what the user sees is what is measured. The numbers come from the core's
    :func:`OsteoAILib.remeasure.remeasure_results`: the run's calibration (no segmentation runs again),
    its vBMD estimator, its flags and diagnosis rules. ``measure``/``diagnose`` replace ``bmd.measure_levels``
    / ``bmd.diagnose`` (tests). Updates ``results`` in place and returns it.
    """
    from ..remeasure import remeasure_results
    from ..roi import trabecular_core

    vol = volume_from_node(volume_node)
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
            inside &= trabecular_core(vert == lab, vol.spacing[::-1])
        rois[rois == lab] = 0
        rois[inside & (rois == 0)] = lab
        set_segment_mask(roi_seg_node, lab, rois == lab, volume_node)
        box.SetAttribute(ATTR + "originalBox", json.dumps(_box_state(box)))
        moved.append(level)

    note = "edited: ROIs edited in 3D Slicer, vBMD recomputed"
    if moved:
        note += f" (boxes moved: {', '.join(moved)})"
    remeasure_results(
        vol, rois, results, note=note, diagnostic_levels=diagnostic_levels, measure=measure, diagnose=diagnose
    )
    if table_node is not None:
        add_results_table(scene, results, ref_volume_node=volume_node, table_node=table_node)
    if text_node is not None:
        add_results_text(scene, results, text_node.GetName(), volume_node, text_node=text_node)
    return results
