"""The MRML bridge on real CT with real vertebra labels in an unusual orientation (PIR): geometry
survives the trip into Slicer nodes and through a saved scene, point for point."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

from OsteoAIBaseLib.imageio import read_volume  # noqa: E402
from OsteoAIBaseLib.levels import IDS  # noqa: E402
from OsteoAILib import mrml  # noqa: E402


@pytest.fixture
def tptbox(shared_data):
    d = shared_data / "tptbox-lumbar-1.5mm"
    vol = read_volume(d / "ct.nii.gz")
    labels = read_volume(d / "labels-verse.nii.gz").array.astype(np.int16)
    return vol, labels, d / "ct.nii.gz"


def test_real_pir_volume_and_labels_keep_their_physical_positions(tptbox, tmp_path):
    import SimpleITK as sitk

    vol, labels, ct_path = tptbox
    hs = mrml.new_scene()
    try:
        node = mrml.add_volume_node(hs.scene, vol, "lumbar")
        back = mrml.volume_from_node(node)
        np.testing.assert_array_equal(back.array, vol.array)
        np.testing.assert_allclose(back.direction, vol.direction, atol=1e-9)
        seg = mrml.add_vertebrae_segmentation(hs.scene, labels, node)
        names = [seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(3)]
        assert names == ["L2 vertebra", "L3 vertebra", "L4 vertebra"]
        # L3's centroid in RAS from the node equals SimpleITK's physical point (LPS) flipped to RAS.
        kji = np.argwhere(labels == IDS["L3"]).mean(0)
        ras = (mrml.ijk_to_ras(node) @ np.r_[kji[::-1], 1.0])[:3]
        img = sitk.ReadImage(str(ct_path))
        lps = img.TransformContinuousIndexToPhysicalPoint([float(x) for x in kji[::-1]])
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-4)
        path = mrml.save_scene(hs.scene, tmp_path / "scene.mrml")
    finally:
        hs.close()
    hs2 = mrml.load_scene(path)
    try:
        vnode = hs2.scene.GetFirstNodeByName("lumbar")
        np.testing.assert_array_equal(mrml.volume_from_node(vnode).array, vol.array)
        snode = hs2.scene.GetFirstNodeByName("lumbar vertebrae")
        np.testing.assert_array_equal(mrml.segmentation_to_labelmap(hs2.scene, snode, vnode), labels)
    finally:
        hs2.close()
