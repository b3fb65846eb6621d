"""OsteoAISegment's MRML bridge: a SpineSegmentation made on the canonical grid lands on the input
volume's grid as "<volume> vertebrae" / "<volume> vertebral bodies", and edits come back."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

from OsteoAIBaseLib.levels import IDS  # noqa: E402
from OsteoAILib import mrml  # noqa: E402
from OsteoAILib.mrml import spine_segmentation as seg_mrml  # noqa: E402
from OsteoAISegmentLib.segmentation import SpineSegmentation  # noqa: E402
from support.mrml_synthetic import synthetic_output  # noqa: E402


def _fake_segmenter(truth_vertebrae, original):
    """Returns the known labels, computed the way a real segmenter would: on the canonical grid."""
    from OsteoAIBaseLib.imageio import to_canonical, volume_to_sitk

    def run(canonical, method="auto", device="cpu", progress=None, cancel=None):
        import SimpleITK as sitk

        lab = sitk.DICOMOrient(volume_to_sitk(original, truth_vertebrae), "LPS")
        vert = sitk.GetArrayFromImage(lab)
        assert vert.shape == to_canonical(original).shape
        bodies = vert.copy()
        bodies[:, : vert.shape[1] // 2] = 0  # anterior half stands in for the body
        if progress:
            progress(1.0, "done")
        return SpineSegmentation(vert, bodies, [19, 20, 21], qc=["rib_count: 12 pairs"], info={"rib_pairs": 12},
                                 segmenter="fake@1")  # fmt: skip

    return run


def test_segmentation_returns_on_the_input_grid(hs):
    out = synthetic_output()
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    calls = []
    nodes = seg_mrml.segment_volume_node(
        hs.scene, vol, segmenter=_fake_segmenter(out.vertebrae, out.volume), progress=lambda f, m: calls.append(f),
        surface=False,
    )  # fmt: skip
    assert calls == [1.0]
    v = nodes["vertebrae"]
    assert v.GetName() == "ct vertebrae"
    np.testing.assert_array_equal(seg_mrml.labelmap_from_segmentation(hs.scene, v, vol), out.vertebrae)
    assert seg_mrml.qc_of(v) == ["rib_count: 12 pairs"]
    assert v.GetAttribute(mrml.ATTR + "segmenter") == "fake@1"
    b = nodes["bodies"]
    assert b.GetName() == "ct vertebral bodies"
    assert b.GetSegmentation().GetSegment("L1").GetName() == "L1 vertebral body"
    assert v.GetNodeReference(mrml.ATTR + "bodies").GetID() == b.GetID()
    body = seg_mrml.labelmap_from_segmentation(hs.scene, b, vol)
    assert set(np.unique(body)) == {0, 19, 20, 21}
    assert np.all(out.vertebrae[body > 0] == body[body > 0])  # bodies lie inside their vertebra


def test_renamed_segment_relabels_the_vertebra(hs):
    out = synthetic_output()
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    seg = mrml.add_vertebrae_segmentation(hs.scene, out.vertebrae, vol)
    # The user says the "L2" block is really L3: renames the segment and clears the OsteoAI tag.
    segment = seg.GetSegmentation().GetSegment("L2")
    segment.SetName("L3 vertebra")
    segment.RemoveTag(mrml.ATTR + "label")
    lab = seg_mrml.labelmap_from_segmentation(hs.scene, seg, vol)
    assert np.all(lab[out.vertebrae == IDS["L2"]] == IDS["L3"])
    assert np.all(lab[out.vertebrae == IDS["L1"]] == IDS["L1"])
