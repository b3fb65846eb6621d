"""Both Slicer modules as a user drives them, without the Slicer application (see slicer_harness.py):
the real module files, widgets built from their .ui files and bound by Slicer's own parameterNodeWrapper,
background runs through a PythonSlicer-like launcher, Cancel, Recompute, the Learn buttons, and both
ScriptedLoadableModuleTest self-tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="slicer-core is not installed")
psutil = pytest.importorskip("psutil", reason="psutil is not installed")

from support import slicer_harness  # noqa: E402

REPO = slicer_harness.REPO


@pytest.fixture
def h(tmp_path, monkeypatch):
    if not (slicer_harness.SLICER_PYTHON / "slicer" / "ScriptedLoadableModule.py").is_file():
        pytest.skip(slicer_harness.SKIP_REASON)  # the CLI tests below still run
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the modules' work folders land here
    with slicer_harness.harness(tmp_path) as h:
        h.load_module("OsteoAISegment")
        h.load_module("OsteoAI")
        yield h


def _nodes(scene, cls):
    col = scene.GetNodesByClass(cls)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


def _work_dirs(tmp_path):
    return sorted(p for p in tmp_path.iterdir() if p.name.startswith("osteoai-"))


def _select(combo, text):
    combo.currentIndex = combo.findText(text)


def _apply_and_wait(h, w, timeout=120):
    progress = []
    orig = w.onProgress
    w.onProgress = lambda f, m: (progress.append((f, m)), orig(f, m))
    w.logic.run = None
    w.ui.applyButton.click()
    assert w.logic.running(), w.ui.statusLabel.text
    assert not w.ui.applyButton.enabled and w.ui.cancelButton.enabled
    assert h.wait_until(lambda: not w.logic.running(), timeout), "the background run did not end"
    w.onProgress = orig
    return progress


def test_segment_panel(h, small_phantom, tmp_path):
    import OsteoAILib.mrml as coremrml

    w = h.widget("OsteoAISegment")
    scene = h.hs.scene
    assert not w.ui.applyButton.enabled  # no volume yet
    vol = coremrml.add_volume_node(scene, small_phantom.volume, "phantom")
    w.ui.inputVolumeSelector.setCurrentNode(vol)  # the GUI drives the parameter node (real connectors)
    p = w._parameterNode
    assert p.inputVolume is vol and w.ui.applyButton.enabled
    _select(w.ui.segmenterComboBox, "classical")
    w.ui.surfaceCheckBox.checked = False
    assert p.segmenter == "classical" and p.show3D is False
    w.ui.progressBar.value = 0
    seen = []
    w.onProgress = (lambda orig: lambda f, m: (seen.append(f), orig(f, m)))(w.onProgress)
    w.ui.applyButton.click()
    assert h.wait_until(lambda: not w.logic.running(), 120)
    assert seen and seen[-1] == 1.0 and w.ui.progressBar.value == 100
    assert w.ui.statusLabel.text.startswith("Done:"), w.ui.statusLabel.text
    assert w.ui.qcLabel.text.startswith("QC:")
    first = p.outputSegmentation
    assert first is not None and first.GetSegmentation().GetNumberOfSegments() >= 3
    assert w.ui.applyButton.enabled and not w.ui.cancelButton.enabled
    # a second Apply replaces the result (vertebrae and bodies), it does not add one
    w.ui.applyButton.click()
    assert h.wait_until(lambda: not w.logic.running(), 120)
    segs = [n.GetName() for n in _nodes(scene, "vtkMRMLSegmentationNode")]
    assert len(segs) == 2, segs  # vertebrae and bodies, once
    assert _work_dirs(tmp_path) == []


def test_osteoai_panel_apply_recompute_learn(h, small_phantom, tmp_path):
    import numpy as np
    import OsteoAILib.mrml as coremrml

    w = h.widget("OsteoAI")
    scene = h.hs.scene
    vol = coremrml.add_volume_node(scene, small_phantom.volume, "phantom")
    w.ui.inputVolumeSelector.setCurrentNode(vol)
    _select(w.ui.segmenterComboBox, "classical")
    w.ui.nKeyImagesSpinBox.value = 2
    p = w._parameterNode
    assert p.segmenter == "classical" and p.nKeyImages == 2
    assert w.ui.diagnosisLabel.text == "No result yet." and not w.ui.recomputeButton.enabled
    progress = _apply_and_wait(h, w)
    assert progress and progress[-1][0] == 1.0, progress
    assert w.ui.statusLabel.text.startswith("Done. vBMD"), w.ui.statusLabel.text
    assert "mg/cm&sup3;" in w.ui.diagnosisLabel.text
    rows = coremrml.table_to_rows(p.resultsTable)
    assert [r["Level"] for r in rows] == [t["level"] for t in small_phantom.truth["levels"]]
    assert w.ui.keyImageList.count == 2 and w.ui.recomputeButton.enabled

    # Learn: key image, cortical vs trabecular, calibration fit (twice: replaced, not duplicated)
    w.ui.keyImageList.currentRow = 1
    assert slicer_harness.sys.modules["slicer"].modules.markups.jumps[-1][0] == "point"
    assert w.ui.keyImagePreview.pixmap is not None and os.path.isfile(w.ui.keyImagePreview.pixmap.path)
    w.ui.showBoneButton.click()
    assert "cortical shell" in w.ui.statusLabel.text, w.ui.statusLabel.text
    charts0 = len(_nodes(scene, "vtkMRMLPlotChartNode"))
    w.ui.showCalibrationButton.click()
    w.ui.showCalibrationButton.click()
    assert len(_nodes(scene, "vtkMRMLPlotChartNode")) == charts0 + 1, w.ui.statusLabel.text

    # Recompute after erasing half of the L1 ROI
    before = {r["Level"]: r["ROI volume"] for r in rows}
    rois = coremrml.segmentation_to_labelmap(scene, p.roiSegmentation, vol)
    l1 = rois == 20
    ks = np.argwhere(l1)[:, 0]
    l1[: (ks.min() + ks.max()) // 2 + 1] = False
    coremrml.set_segment_mask(p.roiSegmentation, 20, l1, vol)
    w.ui.recomputeButton.click()
    assert w.ui.statusLabel.text == "Recomputed from the edited ROIs."
    after = {r["Level"]: r["ROI volume"] for r in coremrml.table_to_rows(p.resultsTable)}
    assert after["L1"] < 0.8 * before["L1"] and after["T12"] == before["T12"]

    # A second Apply after Show calibration fit: one answer, no old fit table or plot left behind
    counts = {c: len(_nodes(scene, c)) for c in ("vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode",
                                                  "vtkMRMLSegmentationNode", "vtkMRMLMarkupsROINode")}  # fmt: skip
    _apply_and_wait(h, w)
    assert w.ui.statusLabel.text.startswith("Done. vBMD"), w.ui.statusLabel.text
    fit_tables = [n for n in _nodes(scene, "vtkMRMLTableNode") if n.GetAttribute("OsteoAI.kind") == "calibration"]
    assert fit_tables == []
    after_counts = {c: len(_nodes(scene, c)) for c in counts}
    assert after_counts["vtkMRMLTableNode"] == counts["vtkMRMLTableNode"] - 1, (counts, after_counts)
    assert after_counts["vtkMRMLPlotChartNode"] == counts["vtkMRMLPlotChartNode"] - 1, (counts, after_counts)
    for c in ("vtkMRMLSegmentationNode", "vtkMRMLMarkupsROINode"):
        assert after_counts[c] == counts[c], (c, counts, after_counts)
    assert _work_dirs(tmp_path) == []


def test_cancel_stops_the_whole_process_tree(h, small_phantom, tmp_path):
    """PythonSlicer is a launcher: Cancel must end the interpreter it started, and leave nothing behind."""
    import OsteoAILib.mrml as coremrml

    w = h.widget("OsteoAI")
    vol = coremrml.add_volume_node(h.hs.scene, small_phantom.volume, "phantom")
    w.ui.inputVolumeSelector.setCurrentNode(vol)
    _select(w.ui.segmenterComboBox, "classical")
    w.ui.applyButton.click()
    run = w.logic.run
    launcher = psutil.Process(run.process.processId())
    assert h.wait_until(lambda: w.ui.progressBar.value > 0 or "input" in w.ui.statusLabel.text, 60)
    tree = [launcher, *launcher.children(recursive=True)]
    assert len(tree) >= 2, "the launcher did not start the interpreter as a child"
    (work_dir,) = _work_dirs(tmp_path)
    t0 = time.monotonic()
    w.ui.cancelButton.click()
    alive = [p for p in tree if _alive(p)]  # right when the press returns: no waiting
    took = time.monotonic() - t0
    assert not alive, f"still running after Cancel: {alive}"
    assert took < 2.0, f"Cancel took {took:.2f} s"
    assert h.wait_until(lambda: not w.logic.running(), 10.0)
    assert w.ui.statusLabel.text == "Cancelled."
    assert not work_dir.exists()
    time.sleep(0.5)  # nothing comes back to re-create the output folder
    assert not work_dir.exists() and _work_dirs(tmp_path) == []
    assert w.ui.applyButton.enabled and not w.ui.cancelButton.enabled


def _alive(proc):
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cli(*args, env=None, cwd=None):
    pp = os.pathsep.join([str(REPO / "OsteoAI"), str(REPO / "OsteoAISegment"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": pp, **(env or {})})  # fmt: skip


def test_cli_cancel_file_stops_at_the_next_stage(small_phantom, tmp_path):
    from OsteoAIBaseLib.imageio import write_volume

    inp = tmp_path / "in.nrrd"
    write_volume(small_phantom.volume, inp)
    cancel = tmp_path / "cancel"
    cancel.touch()
    out = tmp_path / "out"
    r = _cli("-m", "OsteoAILib.cli", "run", str(inp), "--out", str(out), "--segmenter", "classical",
             "--cancel-file", str(cancel))  # fmt: skip
    assert r.returncode == 1 and "cancelled" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_radiomics_without_pyradiomics_fails_before_work(small_phantom, tmp_path):
    from OsteoAIBaseLib.imageio import write_volume

    inp = tmp_path / "in.nrrd"
    write_volume(small_phantom.volume, inp)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['radiomics'] = None  # as if not installed\n")
    out = tmp_path / "out"
    pp = os.pathsep.join([str(hide), str(REPO / "OsteoAI"), str(REPO / "OsteoAISegment")])
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "OsteoAILib.cli", "run", str(inp), "--out", str(out), "--radiomics",
                        "--segmenter", "classical"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": pp})  # fmt: skip
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pyradiomics" in lines[0], r.stderr
    assert "PROGRESS" not in r.stdout + r.stderr and not out.exists()
    assert time.monotonic() - t0 < 30


def test_dependencies_the_slicer_way(h, phantoms, monkeypatch):
    """Resources/requirements.txt: ranges (Slicer keeps its own packages), numpy/SimpleITK never listed,
    satisfied by the exact pins of the command line's requirements.txt; pyradiomics optional."""
    from OsteoAILib.slicer_ui import dependencies as deps
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in deps.readRequirements(deps.requirementFiles()[0])]
    assert reqs and not any(str(r.specifier).startswith("==") for r in reqs), reqs
    assert not {r.name.lower() for r in reqs} & {"numpy", "simpleitk", "torch", "pyradiomics"}
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.split("[")[0].strip().lower()] = version.strip()
    for r in reqs:
        assert r.name.lower() in pins and r.specifier.contains(pins[r.name.lower()]), (r, pins.get(r.name.lower()))
    assert deps.missingDependencies() == []
    w = h.widget("OsteoAI")
    assert w.ui.dependencyStatusLabel.text == "All dependencies are installed."

    # pyradiomics missing: the panel says it is optional; Apply with Radiomics stops before any work
    import slicer.packaging

    real = slicer.packaging.pip_check
    monkeypatch.setattr(slicer.packaging, "pip_check",
                        lambda r, *a: not str(r).startswith("pyradiomics") and real(r, *a))  # fmt: skip
    assert deps.missingDependencies() == [] and deps.missingDependencies(radiomics=True) == ["pyradiomics"]
    w.updateDependencyStatus()
    assert "Optional, for Radiomics: pyradiomics" in w.ui.dependencyStatusLabel.text
    import OsteoAILib.mrml as coremrml

    vol = coremrml.add_volume_node(h.hs.scene, phantoms(levels="L1", matrix=64).volume, "v")
    w.ui.inputVolumeSelector.setCurrentNode(vol)
    w.ui.radiomicsCheckBox.checked = True
    assert w._parameterNode.radiomics is True
    with pytest.raises(RuntimeError, match="pyradiomics") as e:
        w.ui.applyButton.click()  # in Slicer: an error box with this one line
    assert "\n" not in str(e.value)
    assert w.logic.run is None and _work_dirs(h.tmp) == []
    with pytest.raises(RuntimeError, match="pyradiomics"):
        w.logic.start(w._parameterNode)  # the logic alone refuses too, before writing anything
    assert w.logic.run is None and _work_dirs(h.tmp) == []

    # Install goes through slicer.packaging.pip_ensure with the ranges and Slicer's numpy/SimpleITK as constraints
    calls = []

    def pip_ensure(reqs, constraints=None, **kw):
        calls.append((list(reqs), Path(constraints).read_text(), kw))

    monkeypatch.setattr(slicer.packaging, "pip_ensure", pip_ensure)
    with pytest.raises(RuntimeError, match="^Missing Python packages: pyradiomics"):
        deps.installDependencies(radiomics=True)  # the fake installs nothing: still missing
    ((reqs, constraints, kw),) = calls
    assert reqs == ["pyradiomics>=3.0.1"] and kw["requester"] == "OsteoAI" and kw["prompt_install"] is True
    assert "numpy==" in constraints and "SimpleITK==" in constraints


def test_module_self_tests(h):
    import slicer

    slicer.selfTests["OsteoAISegment"](msec=0)
    slicer.selfTests["OsteoAI"](msec=0)


def test_a_registered_segmenter_appears_in_both_panels(tmp_path, monkeypatch):
    """One registry entry (OsteoAISegmentLib.segmenters) and both panels list the segmenter; choosing it in
    the combo box reaches the parameter node and a command line the real CLI accepts."""
    if not (slicer_harness.SLICER_PYTHON / "slicer" / "ScriptedLoadableModule.py").is_file():
        pytest.skip(slicer_harness.SKIP_REASON)
    from OsteoAILib.cli import build_parser
    from OsteoAISegmentLib.registry import Choice
    from OsteoAISegmentLib.segmenters import SEGMENTERS

    SEGMENTERS.register(
        Choice("truth", "phantom truth", "the phantom's own labels (test)", "test_options_registry:segment_with_truth")
    )
    try:
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        with slicer_harness.harness(tmp_path) as h:
            h.load_module("OsteoAISegment")
            h.load_module("OsteoAI")
            for name in ("OsteoAI", "OsteoAISegment"):
                combo = h.widget(name).ui.segmenterComboBox
                assert [combo.itemText(i) for i in range(combo.count)] == SEGMENTERS.names(), name
            w = h.widget("OsteoAI")
            _select(w.ui.segmenterComboBox, "truth")
            assert w._parameterNode.segmenter == "truth"
            args = build_parser().parse_args(w.logic.cliArguments(w._parameterNode, "ct.nrrd", "out")[2:])
            assert args.segmenter == "truth"
    finally:
        SEGMENTERS.unregister("truth")


def test_reload_rereads_the_panels_and_logic_of_the_lib(h, monkeypatch):
    """Slicer's Reload button re-reads only the module file; the widget reloads its Lib files first."""
    import sys

    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget

    reloaded = []
    monkeypatch.setattr(ScriptedLoadableModuleWidget, "onReload", lambda self: reloaded.append(self.moduleName))
    background = sys.modules["OsteoAILib.slicer_ui.background"]
    background.CANCEL_FILE = "edited"  # what a developer's edit would change
    h.widget("OsteoAISegment").onReload()
    assert background.CANCEL_FILE == "cancel" and reloaded == ["OsteoAISegment"]
