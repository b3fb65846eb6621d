"""Write labelmaps as 3D Slicer segmentation files (``.seg.nrrd``) with slicerio: named segments,
colours and terminology, readable by Slicer and by ``slicerio.read_segmentation``."""

from __future__ import annotations

import os

import numpy as np
import slicerio
from OsteoAIBaseLib.atomic import write_with
from OsteoAIBaseLib.levels import NAMES
from OsteoAIBaseLib.volume import Volume

from .terminology import level_color, segment_name, terminology_entry


def write_seg_nrrd(vol: Volume, labelmap: np.ndarray, path: str | os.PathLike, roi: bool = False):
    """Non-overlapping labels share one layer, so the labelmap is written as it is (re-numbered 1..n),
    with a segment entry per label; no per-segment pass over the whole volume."""
    from .label_boxes import label_boxes

    # the labels present and their boxes in one pass, not np.unique's sort of the whole volume
    found = [(lab, box) for lab, box in enumerate(label_boxes(labelmap), start=1) if box is not None]
    labels = [lab for lab, _box in found]
    lut = np.zeros(int(max(labels, default=0)) + 1, np.uint8)
    lut[labels] = np.arange(1, len(labels) + 1)
    kji = lut[labelmap] if labels else np.zeros(labelmap.shape, np.uint8)
    seg = {"voxels": kji, "ijkToLPS": vol.ijk_to_lps(), "segments": []}
    for value, (lab, box_kji) in enumerate(found, start=1):
        level = NAMES.get(lab, str(lab))
        box = box_kji[::-1]  # extents are i, j, k
        seg["segments"].append(
            {
                "id": f"{level}{'_roi' if roi else ''}",
                "name": segment_name(lab, roi),
                "color": list(level_color(lab)),
                "terminology": _terminology_dict(level, roi),
                "labelValue": value,
                "layer": 0,
                "extent": [int(v) for sl in box for v in (sl.start, sl.stop - 1)],
            }
        )
    # Level 1 compression: 10x faster than the default 9 on a 300-slice grid, files ~20% larger.
    # index_order "C": our [k, j, i] array is written as is (a transposed copy costs ~10 s at 300 slices).
    return write_with(
        path, lambda tmp: slicerio.write_segmentation(str(tmp), seg, compression_level=1, index_order="C")
    )


def _terminology_dict(level: str, roi: bool) -> dict:
    from slicerio.segmentation import terminology_entry_from_string

    return terminology_entry_from_string(terminology_entry(level, roi))
