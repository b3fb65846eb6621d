"""MRML bridge against real slicer-core nodes (no GUI): volumes, segmentations, ROI boxes, tables,
plot, key images, parameter node, recompute after edits."""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

from OsteoAIBaseLib.levels import IDS  # noqa: E402
from OsteoAIBaseLib.volume import Volume  # noqa: E402
from OsteoAILib import mrml  # noqa: E402
from OsteoAILib.results import Calibration, Diagnosis, LevelResult, Results, acr_category  # noqa: E402
from OsteoAILib.terminology import SNOMED_VERTEBRA, level_color  # noqa: E402
from support.mrml_synthetic import synthetic_output  # noqa: E402


@pytest.fixture
def out():
    return synthetic_output()


def test_volume_node_roundtrip_keeps_values_and_geometry(hs, out):
    node = mrml.add_volume_node(hs.scene, out.volume, "ct")
    back = mrml.volume_from_node(node)
    assert back.array.dtype == out.volume.array.dtype
    np.testing.assert_array_equal(back.array, out.volume.array)
    np.testing.assert_allclose(back.spacing, out.volume.spacing)
    np.testing.assert_allclose(back.origin, out.volume.origin)
    np.testing.assert_allclose(back.direction, out.volume.direction, atol=1e-12)
    # Slicer's own matrix agrees with Volume.ijk_to_ras, voxel by voxel.
    np.testing.assert_allclose(mrml.ijk_to_ras(node), out.volume.ijk_to_ras())


def test_volume_under_linear_transform_reports_world_geometry(hs, out):
    node = mrml.add_volume_node(hs.scene, out.volume, "ct")
    tr = hs.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    m = slicer.vtkMRMLLinearTransformNode  # noqa: F841  (class exists in slicer-core)
    mat = mrml._numpy_to_matrix(np.array([[1, 0, 0, 5.0], [0, 1, 0, -7.0], [0, 0, 1, 11.0], [0, 0, 0, 1]]))
    tr.SetMatrixTransformToParent(mat)
    node.SetAndObserveTransformNodeID(tr.GetID())
    back = mrml.volume_from_node(node)
    expected_ras = out.volume.ijk_to_ras()[:3, 3] + [5.0, -7.0, 11.0]
    np.testing.assert_allclose(back.ijk_to_ras()[:3, 3], expected_ras)


def test_volume_from_node_rejects_empty_node(hs):
    from OsteoAIBaseLib.errors import InputError

    node = hs.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        mrml.volume_from_node(node)
    with pytest.raises(InputError, match="no input volume"):
        mrml.volume_from_node(None)


def _in_study(hs, node):
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(hs.scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "patient")
    study = sh.CreateStudyItem(patient, "study")
    sh.SetItemParent(mrml._sh_item(hs.scene, node), study)
    return sh, study


def test_vertebrae_segmentation_names_colours_terminology_and_place(hs, out):
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    sh, study = _in_study(hs, vol)
    seg = mrml.add_vertebrae_segmentation(hs.scene, out.vertebrae, vol, surface=True)
    assert seg.GetName() == "ct vertebrae"
    s = seg.GetSegmentation()
    names = [s.GetNthSegment(i).GetName() for i in range(s.GetNumberOfSegments())]
    assert names == ["T12 vertebra", "L1 vertebra", "L2 vertebra"]  # cranial -> caudal
    for level in ("T12", "L1", "L2"):
        segment = s.GetSegment(level)
        np.testing.assert_allclose(segment.GetColor(), level_color(IDS[level]), atol=1e-6)
        tag = slicer_ref()
        assert segment.GetTag("TerminologyEntry", tag)
        assert f"SCT^{SNOMED_VERTEBRA[level]}^{level} vertebra" in str(tag)
    assert sh.GetItemParent(sh.GetItemByDataNode(seg)) == study
    assert s.ContainsRepresentation("Closed surface")
    np.testing.assert_array_equal(mrml.segmentation_to_labelmap(hs.scene, seg, vol), out.vertebrae)


def test_segments_read_back_the_same_from_their_shared_layer_and_through_the_export(hs, out, monkeypatch):
    """The direct read of the shared layer (fast) and Slicer's export (general) give one labelmap,
    also after a segment edit and under a transform (where only the export applies)."""
    from OsteoAILib.mrml import segmentations

    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    seg = mrml.add_vertebrae_segmentation(hs.scene, out.vertebrae, vol)
    fast = mrml.segmentation_to_labelmap(hs.scene, seg, vol)
    with monkeypatch.context() as m:
        m.setattr(segmentations, "_from_shared_layer", lambda *a: None)
        slow = mrml.segmentation_to_labelmap(hs.scene, seg, vol)
    np.testing.assert_array_equal(fast, out.vertebrae)
    np.testing.assert_array_equal(slow, out.vertebrae)
    edited = out.vertebrae == IDS["L1"]
    edited[: edited.shape[0] // 2] = False
    mrml.set_segment_mask(seg, IDS["L1"], edited, vol)
    want = np.where(out.vertebrae == IDS["L1"], 0, out.vertebrae)
    want[edited] = IDS["L1"]
    np.testing.assert_array_equal(mrml.segmentation_to_labelmap(hs.scene, seg, vol), want)


def slicer_ref():
    import vtk

    return vtk.reference("")


def test_segmentation_rejects_labelmap_on_another_grid(hs, out):
    from OsteoAIBaseLib.errors import InputError

    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    with pytest.raises(InputError, match="does not match"):
        mrml.add_vertebrae_segmentation(hs.scene, out.vertebrae[:-1], vol)


def test_roi_boxes_enclose_each_roi_exactly(hs, out):
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    seg, boxes = mrml.add_roi_segmentation(hs.scene, out.rois, vol)
    assert seg.GetName() == "ct trabecular ROIs"
    assert sorted(boxes) == ["L1", "L2", "T12"]
    m = mrml.ijk_to_ras(vol)
    for level, box in boxes.items():
        roi = out.rois == IDS[level]
        inside = mrml.box_mask(box, m, out.rois.shape)
        assert inside[roi].all()  # the box covers the whole ROI...
        kji = np.argwhere(roi)
        bbox = np.zeros_like(roi)
        (k0, j0, i0), (k1, j1, i1) = kji.min(0), kji.max(0)
        bbox[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1] = True
        np.testing.assert_array_equal(inside, bbox)  # ...and nothing beyond its bounding box
        assert not mrml.box_moved(box)
        assert box.GetNodeReference(mrml.ATTR + "roiSegmentation").GetID() == seg.GetID()
        assert not box.GetLocked()
    assert mrml.roi_boxes_of(hs.scene, seg).keys() == boxes.keys()


def test_results_table_units_descriptions_values_and_plot(hs, out):
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    table, summary, chart = mrml.add_results_table(hs.scene, out.results, ref_volume_node=vol)
    assert table.GetName() == "ct BMD"
    assert table.GetColumnUnitLabel("vBMD") == "mg/cm3"
    assert table.GetColumnUnitLabel("Mean") == "HU"
    assert table.GetColumnUnitLabel("ROI volume") == "mm3"
    for col, _, desc, _ in mrml.COLUMNS:
        assert table.GetColumnDescription(col) == desc
    rows = mrml.table_to_rows(table)
    assert [r["Level"] for r in rows] == [lr.level for lr in out.results.levels]
    for r, lr in zip(rows, out.results.levels, strict=False):
        assert r["Mean"] == pytest.approx(lr.roi_mean_hu, abs=0.005)
        assert r["Median"] == pytest.approx(lr.roi_median_hu, abs=0.005)
        assert r["SD"] == pytest.approx(lr.roi_sd_hu, abs=0.005)
        assert r["vBMD"] == pytest.approx(lr.vbmd_mg_cm3, abs=0.005)
        assert r["ROI volume"] == pytest.approx(lr.roi_volume_mm3, abs=0.5)
        assert r["Used for diagnosis"] == (1 if lr.used_for_diagnosis else 0)
        assert r["QC"] == "; ".join(lr.qc)
        assert r["Category"] == acr_category(lr.vbmd_mg_cm3)
    summ = {r["Item"]: r["Value"] for r in mrml.table_to_rows(summary)}
    assert summ["Category (ACR)"] == out.results.diagnosis.category
    assert summ["Diagnostic levels"] == "L1, L2"
    # Plot: vBMD per level plus the two ACR thresholds as horizontal lines.
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    bands = mrml.table_to_rows(chart.GetNodeReference(mrml.ATTR + "bands"))
    assert {r["osteoporosis below"] for r in bands} == {80.0}
    assert {r["normal above"] for r in bands} == {120.0}
    assert chart.GetNthPlotSeriesNode(0).GetYColumnName() == "vBMD"


def test_key_images_are_positions_the_panel_can_jump_to(hs, out):
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    node = mrml.add_key_images(hs.scene, out.results.key_images, vol)
    pos = mrml.key_image_positions(node)
    assert [p["name"] for p in pos] == [k["name"] for k in out.results.key_images]
    for p, k in zip(pos, out.results.key_images, strict=False):
        lps = np.asarray(k["center_lps"])
        np.testing.assert_allclose(p["ras"], [-lps[0], -lps[1], lps[2]])
        assert p["plane"] == k["plane"]


def test_parameter_node_encoding_roundtrip(hs, out):
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    s = mrml.Settings(segmenter="classical", device="cuda", levels="T11-L2", calibration="phantom", kvp=100.0,
                      phantomPairs="10:0, 210:150", diagnosticLevels="L1,L2", vbmdMethod="calibrated-hu",
                      nKeyImages=6, radiomics=True)  # fmt: skip
    node = mrml.write_parameter_node(hs.scene, s, {"inputVolume": vol})
    # the exact strings parameterNodeWrapper's serializers write
    assert node.GetParameter("radiomics") == "True"
    assert node.GetParameter("kvp") == "100.0"
    assert node.GetParameter("nKeyImages") == "6"
    assert node.GetAttribute("ModuleName") == "OsteoAI"
    back, nodes = mrml.read_parameter_node(hs.scene)
    assert back == s
    assert nodes["inputVolume"].GetID() == vol.GetID()
    opts = mrml.options_from_settings(back)
    assert opts.phantom_pairs == [(10.0, 0.0), (210.0, 150.0)]
    assert opts.kvp == 100.0 and opts.levels == "T11-L2" and opts.radiomics
    assert mrml.settings_from_options(opts) == s


def test_phantom_pairs_typo_is_one_clear_error():
    from OsteoAIBaseLib.errors import InputError

    with pytest.raises(InputError, match="HU:mg"):
        mrml.options_from_settings(mrml.Settings(phantomPairs="10-0"))


def _fake_measure(vol, rois, cal, labels=None, level_qc=None, extra=None):
    """Stand-in with bmd.measure_levels' signature: mean HU through the calibration slope."""
    from OsteoAIBaseLib.levels import NAMES

    out = []
    for lab in labels:
        v = vol.array[rois == lab].astype(float)
        lr = LevelResult(level=NAMES[lab], label=lab, qc=list((level_qc or {}).get(lab, [])))
        lr.roi_volume_mm3 = v.size * vol.voxel_volume_mm3
        if v.size:
            lr.roi_mean_hu, lr.roi_median_hu, lr.roi_sd_hu = v.mean(), float(np.median(v)), v.std(ddof=1)
            lr.vbmd_mg_cm3 = (lr.roi_mean_hu - cal.intercept) / cal.slope
        out.append(lr)
    return out


def _fake_diagnose(levels, diagnostic_levels=None):
    used = [lv for lv in levels if lv.level in ("L1", "L2") and lv.vbmd_mg_cm3 is not None]
    for lv in levels:
        lv.used_for_diagnosis = lv in used
    v = float(np.mean([lv.vbmd_mg_cm3 for lv in used]))
    return Diagnosis(vbmd_mg_cm3=v, category=acr_category(v), levels=[lv.level for lv in used], criteria="test")


def _scene_with_results(hs, out):
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    return mrml.add_pipeline_output(hs.scene, out, volume_node=vol)


def test_recompute_after_segment_edit_updates_table_without_segmenting(hs, out):
    nodes = _scene_with_results(hs, out)
    l1 = out.rois == IDS["L1"]
    kept = l1.copy()
    kept[: (np.argwhere(l1)[:, 0].min() + np.argwhere(l1)[:, 0].max()) // 2] = False  # erase the caudal half
    mrml.set_segment_mask(nodes.rois, IDS["L1"], kept, nodes.volume)
    res = mrml.recompute_from_segmentation(
        hs.scene, nodes.volume, nodes.rois, out.results, table_node=nodes.table, text_node=nodes.text,
        measure=_fake_measure, diagnose=_fake_diagnose,
    )  # fmt: skip
    l1r = next(r for r in res.levels if r.level == "L1")
    assert l1r.roi_volume_mm3 == pytest.approx(kept.sum() * out.volume.voxel_volume_mm3)
    assert l1r.roi_mean_hu == pytest.approx(out.volume.array[kept].mean())
    rows = {r["Level"]: r for r in mrml.table_to_rows(nodes.table)}
    assert rows["L1"]["ROI volume"] == pytest.approx(l1r.roi_volume_mm3, abs=0.5)
    assert any(q.startswith("edited:") for q in res.qc)
    assert mrml.results_from_text(nodes.text).levels[1].roi_mean_hu == pytest.approx(l1r.roi_mean_hu)
    # the other levels are untouched
    t12 = out.rois == IDS["T12"]
    assert rows["T12"]["Mean"] == pytest.approx(out.volume.array[t12].mean(), abs=0.005)


def test_recompute_after_box_drag_measures_box_inside_its_vertebra(hs, out):
    nodes = _scene_with_results(hs, out)
    box = nodes.roi_boxes["T12"]
    m = mrml._matrix_to_numpy(box.GetObjectToNodeMatrix())
    m[:3, 3] += mrml.ijk_to_ras(nodes.volume)[:3, :3] @ np.array([0, 3, 0])  # drag 3 voxels along j
    box.GetObjectToNodeMatrix().DeepCopy(mrml._numpy_to_matrix(m))
    assert mrml.box_moved(box)
    res = mrml.recompute_from_segmentation(
        hs.scene, nodes.volume, nodes.rois, out.results, vertebrae_seg_node=nodes.vertebrae,
        table_node=nodes.table, measure=_fake_measure, diagnose=_fake_diagnose,
    )  # fmt: skip
    from OsteoAILib.roi import trabecular_core

    # the box's voxels in the vertebra's marrow: not its cortex or endplates
    core = trabecular_core(out.vertebrae == IDS["T12"], out.volume.spacing[::-1])
    assert core.sum() < (out.vertebrae == IDS["T12"]).sum()
    expected = mrml.box_mask(box, mrml.ijk_to_ras(nodes.volume), out.rois.shape) & core
    assert expected.any()
    t12 = next(r for r in res.levels if r.level == "T12")
    assert t12.roi_volume_mm3 == pytest.approx(expected.sum() * out.volume.voxel_volume_mm3)
    assert t12.roi_mean_hu == pytest.approx(out.volume.array[expected].mean())
    # the segment now shows exactly what was measured, and the box counts as placed again
    seg_lab = mrml.segmentation_to_labelmap(hs.scene, nodes.rois, nodes.volume)
    np.testing.assert_array_equal(seg_lab == IDS["T12"], expected)
    assert not mrml.box_moved(box)
    assert "T12" in res.qc[-1]


def test_recompute_with_the_real_core(hs, out):
    bmd = pytest.importorskip("OsteoAILib.bmd")
    pytest.importorskip("OsteoAILib.calibration", reason="calibration stage not built yet")
    nodes = _scene_with_results(hs, out)
    res = mrml.recompute_from_segmentation(hs.scene, nodes.volume, nodes.rois, out.results, table_node=nodes.table)
    for r in res.levels:
        roi = out.rois == r.label
        assert r.roi_mean_hu == pytest.approx(out.volume.array[roi].mean())
    assert res.diagnosis.category == bmd.diagnose(res.levels).category


def test_results_text_carries_the_whole_results(hs, out):
    node = mrml.add_results_text(hs.scene, out.results, "ct results")
    assert mrml.results_from_text(node).to_dict() == json.loads(json.dumps(out.results.to_dict()))


def test_volume_name_carries_no_identity_unless_kept(out):
    out.results.input["source"] = "/data/Doe John.nii.gz"
    assert mrml._volume_name(out) == "CT"
    out.results.input["identifiers"] = {"file_name": "case 7.nii.gz"}  # --keep-identifiers
    assert mrml._volume_name(out) == "case 7"


def test_synthetic_truth_is_consistent(out):
    # guard on the fixture itself: its stated ROI means are the voxel means
    for lr in out.results.levels:
        assert lr.roi_mean_hu == pytest.approx(out.volume.array[out.rois == lr.label].mean())
    assert isinstance(out.volume, Volume) and isinstance(out.results, Results)
    assert isinstance(out.results.calibration, Calibration)


def test_calibration_fit_table_and_chart(hs, out):
    vol = mrml.add_volume_node(hs.scene, out.volume, "ct")
    out.results.calibration.references = {
        "air": {"measured_hu": -990.0, "expected_hu": -1000.0, "used": True},
        "fat": {"measured_hu": -90.0, "expected_hu": -100.0, "used": True},
        "blood": {"measured_hu": 60.0, "expected_hu": 40.0, "used": False},
    }
    table, chart = mrml.add_calibration_fit(hs.scene, out.results, vol)
    rows = {r["Reference"]: r for r in mrml.table_to_rows(table)}
    cal = out.results.calibration
    assert rows["fat"]["Fit"] == pytest.approx(cal.slope * -90.0 + cal.intercept)
    assert rows["blood"]["Used"] == 0 and rows["air"]["Expected HU"] == -1000.0
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    out.results.calibration.references = {}
    assert mrml.add_calibration_fit(hs.scene, out.results, vol) == (None, None)


def test_bone_contrast_separates_cortical_shell_from_trabecular_roi(hs, out):
    nodes = _scene_with_results(hs, out)
    c = mrml.bone_contrast(hs.scene, nodes.volume, nodes.vertebrae, nodes.rois, "L1")
    assert c["trabecular_hu"] == pytest.approx(out.volume.array[out.rois == IDS["L1"]].mean())
    assert c["cortical_hu"] == pytest.approx(500, abs=10)  # the synthetic shell is 500 +- 20 HU
    # the ROI centre maps back into the ROI
    m = np.linalg.inv(mrml.ijk_to_ras(nodes.volume))
    i, j, k = np.round((m @ np.r_[c["roi_center_ras"], 1.0])[:3]).astype(int)
    assert out.rois[k, j, i] == IDS["L1"]
