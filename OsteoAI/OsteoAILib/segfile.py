"""Write labelmaps as 3D Slicer segmentation files (``.seg.nrrd``) with slicerio: named segments,
colours and terminology, readable by Slicer and by ``slicerio.read_segmentation``."""

from __future__ import annotations

import os

import numpy as np
import slicerio

from .atomic import write_with
from .levels import NAMES
from .terminology import level_color, segment_name, terminology_entry
from .volume import Volume


def write_seg_nrrd(vol: Volume, labelmap: np.ndarray, path: str | os.PathLike, roi: bool = False):
    seg = slicerio.create_segmentation(labelmap.shape[::-1], vol.ijk_to_lps(), dtype="uint8")
    ijk = np.ascontiguousarray(np.transpose(labelmap, (2, 1, 0)))  # slicerio indexes voxels [i, j, k]
    for lab in sorted(int(x) for x in np.unique(labelmap) if x != 0):
        level = NAMES.get(lab, str(lab))
        slicerio.add_segment(
            seg,
            ijk == lab,
            {
                "id": f"{level}{'_roi' if roi else ''}",
                "name": segment_name(lab, roi),
                "color": list(level_color(lab)),
                "terminology": _terminology_dict(level, roi),
            },
        )
    return write_with(path, lambda tmp: slicerio.write_segmentation(str(tmp), seg))


def _terminology_dict(level: str, roi: bool) -> dict:
    from slicerio.segmentation import terminology_entry_from_string

    return terminology_entry_from_string(terminology_entry(level, roi))
