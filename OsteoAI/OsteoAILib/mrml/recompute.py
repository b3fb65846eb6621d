"""vBMD recomputed from ROI segments and boxes the user edited in Slicer: the scene side of
:mod:`OsteoAILib.remeasure` (edited nodes -> ROI labelmap -> the core re-measure -> updated nodes)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from OsteoAIBaseLib import levels as lv

from ..results import Results
from .constants import ATTR
from .roi_boxes import _box_state, box_block, box_mask, box_moved, roi_boxes_of
from .segmentations import labelmap_block, segment_block, set_segment_mask
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
    from ..remeasure import crop, remeasure_results
    from ..roi import trabecular_core

    vol = volume_from_node(volume_node, copy=False)  # read only here: a 512 x 512 CT's copy costs ~0.4 s
    m = ijk_to_ras(volume_node)
    boxes = roi_boxes if roi_boxes is not None else roi_boxes_of(scene, roi_seg_node)
    to_move = [(level, box) for level, box in boxes.items() if box_moved(box)]
    # All of it happens in one block of the grid: around every ROI voxel and every moved box (outside it the
    # ROI labelmap is 0). On a 512 x 512 CT each grid-sized array costs a few tenths of a second.
    roi_at, roi_labels = labelmap_block(scene, roi_seg_node, volume_node)
    region = _union([roi_at] + [box_block(box, m, vol.shape) for _, box in to_move])
    rois = np.zeros([s.stop - s.start for s in region], np.int16)
    if roi_at is not None:
        rois[_within(roi_at, region)] = roi_labels
    moved = []
    for level, box in to_move:
        lab = int(box.GetAttribute(ATTR + "label") or lv.IDS[level])
        inside = box_mask(box, m, vol.shape, at=region)
        if vertebrae_seg_node is not None:
            # the vertebra's marrow, from the block around the vertebra (trabecular_core's own margin of 2)
            core = np.zeros(rois.shape, bool)
            around, body = segment_block(scene, vertebrae_seg_node, lab, volume_node, pad=2)
            if around is not None:
                both = _intersection(around, region)
                if both is not None:
                    core[_within(both, region)] = trabecular_core(body, vol.spacing[::-1])[_within(both, around)]
            inside &= core
        rois[rois == lab] = 0
        rois[inside & (rois == 0)] = lab
        set_segment_mask(roi_seg_node, lab, rois == lab, volume_node, at=region)
        box.SetAttribute(ATTR + "originalBox", json.dumps(_box_state(box)))
        moved.append(level)

    note = "edited: ROIs edited in 3D Slicer, vBMD recomputed"
    if moved:
        note += f" (boxes moved: {', '.join(moved)})"
    remeasure_results(
        crop(vol, region),
        rois,
        results,
        note=note,
        diagnostic_levels=diagnostic_levels,
        measure=measure,
        diagnose=diagnose,
    )
    if table_node is not None:
        add_results_table(scene, results, ref_volume_node=volume_node, table_node=table_node)
    if text_node is not None:
        add_results_text(scene, results, text_node.GetName(), volume_node, text_node=text_node)
    return results


def _union(blocks) -> tuple[slice, ...]:
    """The smallest block holding every given block (None ones skipped); one voxel when there is none."""
    blocks = [b for b in blocks if b is not None]
    if not blocks:
        return (slice(0, 1),) * 3
    return tuple(slice(min(b[d].start for b in blocks), max(b[d].stop for b in blocks)) for d in range(3))


def _intersection(a, b) -> tuple[slice, ...] | None:
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
    return out if all(s.stop > s.start for s in out) else None


def _within(block, outer) -> tuple[slice, ...]:
    """``block`` (grid indices) as indices into an array cut to ``outer``."""
    return tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(block, outer, strict=True))
