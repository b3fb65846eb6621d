"""``write_scene`` (what ``osteoai run --scene`` writes) reloads with slicer-core with every node and value."""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

from OsteoAILib import mrml  # noqa: E402
from OsteoAILib.pipeline import PipelineOptions  # noqa: E402
from support.mrml_synthetic import synthetic_output  # noqa: E402


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = synthetic_output()
    opts = PipelineOptions(levels="T12-L2", calibration="internal", segmenter="classical", kvp=110.0, n_key_images=3)
    d = tmp_path_factory.mktemp("scene")
    path = mrml.write_scene(out, d, options=opts)
    hs = mrml.load_scene(path)
    yield out, opts, path, hs
    hs.close()


def _one(scene, name):
    col = scene.GetNodesByName(name)
    assert col.GetNumberOfItems() == 1, f"expected one node named {name!r}, found {col.GetNumberOfItems()}"
    return col.GetItemAsObject(0)


def test_scene_files_are_written(written):
    _, _, path, _ = written
    assert path.name == "scene.mrml" and path.is_file()
    names = {p.name for p in path.parent.iterdir()}
    expected = ["CT.nrrd", "CT_vertebrae.seg.nrrd", "CT_trabecular_ROIs.seg.nrrd",
                "CT_BMD.tsv", "CT_BMD_summary.tsv", "T12_ROI_box.mrk.json",
                "CT_key_images.mrk.json"]  # fmt: skip
    for f in expected:
        assert f in names, f"{f} missing from {sorted(names)}"
    assert not [n for n in names if n.startswith(".")], "temporary files left behind"


def test_reloaded_volume_is_identical(written):
    out, _, _, hs = written
    node = _one(hs.scene, "CT")
    back = mrml.volume_from_node(node)
    np.testing.assert_array_equal(back.array, out.volume.array)
    np.testing.assert_allclose(back.ijk_to_ras(), out.volume.ijk_to_ras(), atol=1e-6)


def test_reloaded_segmentations_are_identical(written):
    out, _, _, hs = written
    vol = _one(hs.scene, "CT")
    for name, truth, suffix in (
        ("CT vertebrae", out.vertebrae, "vertebra"),
        ("CT trabecular ROIs", out.rois, "trabecular ROI"),
    ):
        seg = _one(hs.scene, name)
        np.testing.assert_array_equal(mrml.segmentation_to_labelmap(hs.scene, seg, vol), truth)
        s = seg.GetSegmentation()
        assert [s.GetNthSegment(i).GetName() for i in range(s.GetNumberOfSegments())] == [
            f"{lv} {suffix}" for lv in ("T12", "L1", "L2")
        ]
        tag = __import__("vtk").reference("")
        assert s.GetNthSegment(0).GetTag("TerminologyEntry", tag) and "23215003" in str(tag)  # T12 SNOMED CT


def test_reloaded_tables_and_plot_are_identical(written):
    out, _, _, hs = written
    table = _one(hs.scene, "CT BMD")
    rows = mrml.table_to_rows(table)
    assert [r["Level"] for r in rows] == ["T12", "L1", "L2"]
    # exactly what the table showed before saving (values rounded for display, see mrml.COLUMNS)
    expected = [dict(zip([c[0] for c in mrml.COLUMNS], row, strict=False)) for row in mrml._table_rows(out.results)]
    for r, e, lr in zip(rows, expected, out.results.levels, strict=False):
        for col, v in e.items():
            assert r[col] == (float(v) if not isinstance(v, str) else v), col
        assert r["Mean"] == pytest.approx(lr.roi_mean_hu, abs=0.005)
        assert r["vBMD"] == pytest.approx(lr.vbmd_mg_cm3, abs=0.005)
    assert table.GetColumnUnitLabel("vBMD") == "mg/cm3"
    assert (
        table.GetColumnDescription("Used for diagnosis")
        == dict((c[0], c[2]) for c in mrml.COLUMNS)["Used for diagnosis"]
    )
    summary = {r["Item"]: r["Value"] for r in mrml.table_to_rows(_one(hs.scene, "CT BMD summary"))}
    assert summary == dict(mrml.summary_rows(out.results))
    chart = _one(hs.scene, "CT BMD chart")
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    series = chart.GetNthPlotSeriesNode(0)
    assert series.GetTableNode().GetID() == table.GetID() and series.GetYColumnName() == "vBMD"
    bands = mrml.table_to_rows(chart.GetNodeReference(mrml.ATTR + "bands"))
    assert [r["normal above"] for r in bands] == [120.0, 120.0]


def test_reloaded_results_text_roi_boxes_key_images(written):
    out, _, _, hs = written
    res = mrml.results_from_text(_one(hs.scene, "CT results"))
    assert res.to_dict() == json.loads(json.dumps(out.results.to_dict()))
    assert res.diagnosis.category == out.results.diagnosis.category
    assert res.calibration.slope == out.results.calibration.slope
    seg = _one(hs.scene, "CT trabecular ROIs")
    boxes = mrml.roi_boxes_of(hs.scene, seg)
    assert sorted(boxes) == ["L1", "L2", "T12"]
    vol = _one(hs.scene, "CT")
    for box in boxes.values():
        assert not mrml.box_moved(box)
        inside = mrml.box_mask(box, mrml.ijk_to_ras(vol), out.rois.shape)
        assert inside[out.rois == int(box.GetAttribute(mrml.ATTR + "label"))].all()
    kin = _one(hs.scene, "CT key images")
    pos = mrml.key_image_positions(kin)
    assert [p["name"] for p in pos] == ["1_sagittal", "2_axial_L1"]
    np.testing.assert_allclose(pos[1]["ras"], [-8.0, 3.0, 50.0])


def test_reloaded_parameter_node_has_the_run_settings(written):
    _, opts, _, hs = written
    settings, nodes = mrml.read_parameter_node(hs.scene)
    assert settings == mrml.settings_from_options(opts)
    assert settings.kvp == 110.0 and settings.segmenter == "classical" and settings.levels == "T12-L2"
    assert nodes["inputVolume"].GetName() == "CT"
    assert nodes["roiSegmentation"].GetName() == "CT trabecular ROIs"
    assert nodes["resultsTable"].GetName() == "CT BMD"


def test_reloaded_nodes_sit_in_one_folder_with_the_volume(written):
    _, _, _, hs = written
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(hs.scene)
    vol_parent = sh.GetItemParent(sh.GetItemByDataNode(_one(hs.scene, "CT")))
    for name in ("CT vertebrae", "CT trabecular ROIs", "CT BMD", "T12 ROI box"):
        item = sh.GetItemByDataNode(_one(hs.scene, name))
        assert item and sh.GetItemParent(item) == vol_parent


def test_write_scene_twice_overwrites_cleanly(tmp_path):
    out = synthetic_output(seed=1)
    mrml.write_scene(out, tmp_path)
    out.results.levels[0].roi_mean_hu = 999.0
    path = mrml.write_scene(out, tmp_path)
    hs = mrml.load_scene(path)
    try:
        rows = mrml.table_to_rows(_one(hs.scene, "CT BMD"))
        assert rows[0]["Mean"] == 999.0
    finally:
        hs.close()
