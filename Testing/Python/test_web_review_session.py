"""The review app's MRML side without a browser: a study's scene opened in a fresh scene, an ROI box moved and
resized, ROI voxels erased, Recompute through the bridge (the Slicer module's re-measure), and the automatic
result left as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="slicer-core is not installed")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from OsteoAILib.cli import main
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    d = tmp_path_factory.mktemp("study")
    files = write_phantom(
        make_phantom(PhantomParams(seed=3, matrix=160, spacing=(1.8, 1.8, 2.5), levels="T12-L2")), d / "phantom"
    )
    assert (
        main(["run", str(files["ct"]), "--out", str(d / "run"), "--scene", "--quiet", "--segmenter", "classical"]) == 0
    )
    return d / "run"


def test_box_edits_and_erase_change_what_recompute_measures(hs, study):
    import numpy as np
    from OsteoAILib import mrml

    from OsteoAIWeb.review_session import ReviewSession

    sha = hashlib.sha256((study / "results.json").read_bytes()).hexdigest()
    data_classes = (
        "vtkMRMLVolumeNode",
        "vtkMRMLSegmentationNode",
        "vtkMRMLMarkupsNode",
        "vtkMRMLTableNode",
        "vtkMRMLPlotChartNode",
        "vtkMRMLTextNode",
    )

    def data_nodes():
        return sum(hs.scene.GetNodesByClass(c).GetNumberOfItems() for c in data_classes)

    n_before = data_nodes()
    ses = ReviewSession(hs.scene, study)
    level = ses.auto.diagnosis.levels[0]
    auto = {lv.level: lv for lv in ses.auto.levels}
    assert level in ses.levels()

    ses.move_box(level, "S", 2.0)
    ses.resize_box(level, "R", -4.0)
    moved = {lv.level: lv for lv in ses.recompute().levels}
    assert moved[level].roi_volume_mm3 != pytest.approx(auto[level].roi_volume_mm3, abs=1.0)
    others = [lv for lv in auto if lv != level and auto[lv].vbmd_mg_cm3 is not None]
    for lv in others:  # the other levels keep their numbers
        assert moved[lv].vbmd_mg_cm3 == pytest.approx(auto[lv].vbmd_mg_cm3, rel=1e-6)
    assert any(q.startswith("edited:") for q in ses.current.qc)

    centre = ses.teaching(level)["roi_center_ras"]
    lab = next(lv.label for lv in ses.auto.levels if lv.level == level)
    before = mrml.segmentation_to_labelmap(hs.scene, ses.rois, ses.volume)
    erased = ses.erase_axial(level, centre[2])
    assert erased > 0
    after_erase = mrml.segmentation_to_labelmap(hs.scene, ses.rois, ses.volume)
    gone = (before == lab) & (after_erase != lab)
    assert gone.sum() == erased and len(set(np.nonzero(gone)[0])) == 1  # one axial slice of this level, nothing else
    np.testing.assert_array_equal(np.where(gone, 0, before), after_erase)
    after = {lv.level: lv for lv in ses.recompute().levels}
    assert after[level].roi_volume_mm3 < moved[level].roi_volume_mm3
    assert ses.edits[-1].startswith(f"{level} ROI erased") and len(ses.edits) == 3

    t = ses.teaching(level)
    assert t["trabecular_hu"] is not None and t["cortical_hu"] is not None
    # the automatic result is read, never written; Recompute worked on a copy
    assert hashlib.sha256((study / "results.json").read_bytes()).hexdigest() == sha
    assert {lv.level: lv.vbmd_mg_cm3 for lv in ses.auto.levels} == {k: v.vbmd_mg_cm3 for k, v in auto.items()}
    ses.close()
    assert data_nodes() == n_before  # a closed study leaves no volume, segmentation, box or table behind


def test_plots_and_pdf_come_from_the_result(study, tmp_path):
    from OsteoAILib.results import Results

    from OsteoAIWeb.explain import explain
    from OsteoAIWeb.pdf import write_summary_pdf
    from OsteoAIWeb.plots import bmd_png, calibration_png

    results = Results.from_dict(json.loads((study / "results.json").read_text()))
    assert bmd_png(results)[:8] == b"\x89PNG\r\n\x1a\n" and calibration_png(results)[:4] == b"\x89PNG"
    pdf = write_summary_pdf(results, study, tmp_path / "summary.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = explain(results)
    d = results.diagnosis
    assert f"{d.vbmd_mg_cm3:.0f} mg/cm³" in text["headline"] and d.category in text["headline"]
    assert any("not a diagnosis" in x for x in text["limits"])


def test_box_mask_tests_only_the_block_around_the_box_and_finds_the_same_voxels(hs):
    """Recompute after a box move must answer in seconds on a 512x512 CT: box_mask looks only at the grid block
    around the box. It must find exactly the voxels a test of the whole grid finds (rotated, clipped boxes)."""
    import numpy as np
    from OsteoAILib.mrml.roi_boxes import box_mask
    from OsteoAILib.mrml.volumes import _matrix_to_numpy, _numpy_to_matrix

    def whole_grid(node, m, shape):
        w2o = np.linalg.inv(_matrix_to_numpy(node.GetObjectToWorldMatrix()))
        k, j, i = np.indices(shape)
        obj = (w2o @ m @ np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)]))[:3]
        return np.all(np.abs(obj) <= np.asarray(node.GetSize())[:, None] / 2 + 1e-6, axis=0).reshape(shape)

    rng = np.random.default_rng(0)
    shape, hits = (30, 40, 50), 0
    for t in range(30):
        m = np.eye(4)
        m[:3, :3] = np.diag(rng.uniform(0.5, 2, 3))[:, [1, 0, 2] if t % 2 else [0, 1, 2]] * [-1 if t % 2 else 1, 1, 1]
        m[:3, 3] = rng.uniform(-20, 20, 3)
        a = rng.uniform(0, 0.5)
        obj = np.eye(4)
        obj[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
        obj[:3, 3] = m[:3, :3] @ rng.uniform(-5, 55, 3) + m[:3, 3]
        node = hs.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        node.GetObjectToNodeMatrix().DeepCopy(_numpy_to_matrix(obj))
        node.SetSize(*rng.uniform(1, 40, 3))
        fast = box_mask(node, m, shape)
        assert np.array_equal(fast, whole_grid(node, m, shape)), t
        lo = rng.integers(0, shape)
        block = tuple(slice(int(a), int(rng.integers(a + 1, n + 1))) for a, n in zip(lo, shape, strict=True))
        assert np.array_equal(box_mask(node, m, shape, at=block), fast[block]), t  # Recompute's block of the grid
        hits += bool(fast.any())
    assert hits >= 10  # most boxes overlap the grid: the comparison is not between empty masks


def test_recompute_in_blocks_equals_the_full_grid_rule_and_the_core_remeasure(hs, study):
    """Recompute works in the block around the ROIs and the moved box (a 512x512 CT's full-grid arrays cost
    seconds): the edited segment must be the full-grid rule's (box voxels in the vertebra's marrow), and the
    numbers those of the core's re-measure and of bmd.measure_levels on the whole grid, to the last bit."""
    import copy

    import numpy as np
    from OsteoAILib import bmd, mrml
    from OsteoAILib.remeasure import remeasure_results
    from OsteoAILib.roi import trabecular_core

    from OsteoAIWeb.review_session import ReviewSession

    ses = ReviewSession(hs.scene, study)
    level = ses.auto.diagnosis.levels[0]
    lab = next(lv.label for lv in ses.auto.levels if lv.level == level)
    before = mrml.segmentation_to_labelmap(hs.scene, ses.rois, ses.volume)
    vert = mrml.segmentation_to_labelmap(hs.scene, ses.vertebrae, ses.volume)
    ses.move_box(level, "A", -2.0)
    ses.resize_box(level, "S", 4.0)
    vol = mrml.volume_from_node(ses.volume)
    box = mrml.box_mask(ses.boxes[level], mrml.ijk_to_ras(ses.volume), vol.shape)
    want = np.where(before == lab, 0, before)
    want[box & trabecular_core(vert == lab, vol.spacing[::-1]) & (want == 0)] = lab
    got = ses.recompute()
    after = mrml.segmentation_to_labelmap(hs.scene, ses.rois, ses.volume)
    np.testing.assert_array_equal(after, want)
    assert (after == lab).sum() != (before == lab).sum()  # the edit changed the ROI

    core = remeasure_results(vol, after, copy.deepcopy(ses.auto), note=got.qc[-1])
    assert core.to_dict() == got.to_dict()
    whole = {lv.label: lv for lv in bmd.measure_levels(vol, after, ses.auto.calibration)}
    for lv in got.levels:
        if lv.label in whole and whole[lv.label].roi_mean_hu is not None:
            w = whole[lv.label]
            assert (lv.roi_mean_hu, lv.roi_median_hu, lv.roi_sd_hu, lv.roi_volume_mm3) == (
                w.roi_mean_hu, w.roi_median_hu, w.roi_sd_hu, w.roi_volume_mm3,
            )  # fmt: skip
    ses.close()


def _scene_state(scene):
    from OsteoAILib import mrml
    from vtkmodules.util import numpy_support

    _, nodes = mrml.read_parameter_node(scene)
    vol = nodes["inputVolume"]
    col = scene.GetNodes()
    return {
        "ct": numpy_support.vtk_to_numpy(vol.GetImageData().GetPointData().GetScalars()).tobytes(),
        "ijk_to_ras": mrml.ijk_to_ras(vol).tobytes(),
        "window_level": (vol.GetDisplayNode().GetWindow(), vol.GetDisplayNode().GetLevel()),
        "ct_file": vol.GetStorageNode().GetFileName(),
        "rois": mrml.segmentation_to_labelmap(scene, nodes["roiSegmentation"], vol).tobytes(),
        "vertebrae": mrml.segmentation_to_labelmap(scene, nodes["vertebraeSegmentation"], vol).tobytes(),
        "nodes": sorted(
            (col.GetItemAsObject(i).GetClassName(), col.GetItemAsObject(i).GetName() or "")
            for i in range(col.GetNumberOfItems())
        ),
    }


@pytest.mark.parametrize("encoding", ["gzip", "raw"])
def test_scene_import_with_the_ct_read_aside_gives_slicers_scene(study, tmp_path, encoding):
    """The review app reads the study's CT on a second thread (scene_load): the scene it gets must be the one
    slicer-core's own import gives, node for node, voxel for voxel, with the same geometry and window/level."""
    import shutil

    import nrrd
    from OsteoAILib import mrml

    from OsteoAIWeb.scene_load import _CTRead, import_scene

    folder = tmp_path / "study"
    shutil.copytree(study, folder)
    if encoding == "raw":
        ct = folder / "CT.nrrd"
        data, header = nrrd.read(str(ct))
        header["encoding"] = "raw"
        nrrd.write(str(ct), data, header)
    side = _CTRead(folder / "CT.nrrd")
    side.run()
    assert side.error is None  # the side reader takes this file (not a silent fall-back to Slicer's reader)
    slicer_scene, ours = mrml.new_scene(), mrml.new_scene()
    try:
        slicer_scene.scene.SetURL(str(folder / "scene.mrml"))
        assert slicer_scene.scene.Import()
        ran = []
        assert import_scene(ours.scene, folder / "scene.mrml", meanwhile=lambda: ran.append(1))
        assert ran == [1]
        assert _scene_state(ours.scene) == _scene_state(slicer_scene.scene)
    finally:
        slicer_scene.close()
        ours.close()


def test_scene_import_leaves_a_ct_it_does_not_read_to_slicer(study, tmp_path):
    """A CT file the side reader does not take (here a big-endian NRRD) is read by slicer-core, as before."""
    import shutil

    import nrrd
    from OsteoAILib import mrml

    from OsteoAIWeb.scene_load import import_scene

    folder = tmp_path / "study"
    shutil.copytree(study, folder)
    ct = folder / "CT.nrrd"
    data, header = nrrd.read(str(ct))
    header["endian"] = "big"
    nrrd.write(str(ct), data, header)
    h = mrml.new_scene()
    try:
        assert import_scene(h.scene, folder / "scene.mrml")
        _, nodes = mrml.read_parameter_node(h.scene)
        got = mrml.volume_from_node(nodes["inputVolume"]).array
        assert got.shape == data.shape[::-1] and (got == data.transpose(2, 1, 0)).all()
    finally:
        h.close()
