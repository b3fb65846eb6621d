"""vertebrae.seg.nrrd: what slicerio (and so 3D Slicer) reads back is exactly our labelmap and geometry."""

from __future__ import annotations

import numpy as np
import slicerio
from OsteoAIBaseLib.volume import Volume
from OsteoAILib.segfile import write_seg_nrrd


def test_seg_nrrd_round_trip_on_a_non_square_oblique_grid(tmp_path):
    lab = np.zeros((7, 11, 13), np.int16)  # k, j, i all different: any axis swap would show
    lab[1:3, 2:9, 3:5] = 19
    lab[4:6, 1:4, 6:12] = 20
    lab[6, 10, 12] = 8
    c, s = np.cos(0.3), np.sin(0.3)
    vol = Volume(lab, (0.5, 0.8, 2.0), (10.0, -20.0, 30.0), np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]))
    write_seg_nrrd(vol, lab, tmp_path / "v.seg.nrrd")
    seg = slicerio.read_segmentation(str(tmp_path / "v.seg.nrrd"))
    assert np.allclose(seg["ijkToLPS"], vol.ijk_to_lps())
    for label, name in ((19, "T12 vertebra"), (20, "L1 vertebra"), (8, "T1 vertebra")):
        segment = slicerio.segment_from_name(seg, name)
        mask = np.transpose(slicerio.segment_mask(seg, segment), (2, 1, 0))  # slicerio is [i, j, k]
        assert np.array_equal(mask, lab == label), name
        assert segment["terminology"]["anatomicRegion"][2] == name
    assert slicerio.segment_names(seg) == ["T1 vertebra", "T12 vertebra", "L1 vertebra"]


def test_roi_segments_are_named_and_coded_as_cancellous_bone(tmp_path):
    lab = np.zeros((4, 5, 6), np.int16)
    lab[1:3, 1:4, 1:5] = 21
    write_seg_nrrd(Volume(lab), lab, tmp_path / "r.seg.nrrd", roi=True)
    seg = slicerio.read_segmentation(str(tmp_path / "r.seg.nrrd"))
    (segment,) = seg["segments"]
    assert segment["name"] == "L2 trabecular ROI"
    assert segment["terminology"]["type"][1] == "4421005"
