"""The Slicer modules' logic against real MRML (slicer-core), with only Slicer's GUI-side Python
(ScriptedLoadableModule, parameterNodeWrapper, slicer.app) replaced by small stand-ins.

Checks what the module code does with the scene: the command line it builds is one the real CLI
accepts, results load from an ``osteoai run`` output folder, Recompute updates the table, and a
second Apply leaves no stale nodes."""

from __future__ import annotations

import importlib
import sys
import types
import typing
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

from OsteoAILib import mrml  # noqa: E402
from support.mrml_synthetic import synthetic_output  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class _Choice:
    def __init__(self, *a, **k):
        pass


def _parameter_node_wrapper(cls):
    """Stand-in for slicer.parameterNodeWrapper: same storage encoding as the real serializers."""
    hints = typing.get_type_hints(cls, include_extras=True)

    def base(t):
        return t.__origin__ if typing.get_origin(t) is typing.Annotated else t

    fields = {k: base(v) for k, v in hints.items()}

    class Wrapped:
        # the GUI binding of the real wrapper: a tag per connected ui, released by disconnectGui
        def connectGui(self, ui):
            ui.bound = getattr(ui, "bound", 0) + 1
            return ui

        def disconnectGui(self, tag):
            tag.bound -= 1

        # the real wrapper forwards VTK observation to its node (Slicer's module template relies on it)
        def AddObserver(self, *a):
            return self.parameterNode.AddObserver(*a)

        def RemoveObserver(self, *a):
            return self.parameterNode.RemoveObserver(*a)

        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)
            for name, typ in fields.items():
                if not _is_node(typ) and not node.HasParameter(name):
                    setattr(self, name, getattr(cls, name, typ()))

        def __getattr__(self, name):
            typ = fields[name]
            node = object.__getattribute__(self, "parameterNode")
            if _is_node(typ):
                return node.GetNodeReference(name)
            text = node.GetParameter(name)
            return text == "True" if typ is bool else typ(text)

        def __setattr__(self, name, value):
            typ = fields[name]
            node = self.parameterNode
            if _is_node(typ):
                node.SetParameter(name, "")
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                node.SetParameter(name, ("True" if value else "False") if typ is bool else str(value))

    return Wrapped


def _is_node(t):
    return isinstance(t, type) and issubclass(t, slicer.vtkMRMLNode)


class _Logic:
    def __init__(self, *a, **k):
        pass

    def getParameterNode(self):
        return mrml.get_parameter_node(slicer.mrmlScene, self.moduleName)


@pytest.fixture
def module(monkeypatch, tmp_path):
    hs = mrml.new_scene()
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest"):
        setattr(slm, name, type(name, (), {"__init__": lambda self, *a, **k: None}))
    slm.ScriptedLoadableModuleLogic = _Logic
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper, pnw.Choice, pnw.WithinRange = _parameter_node_wrapper, _Choice, _Choice
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", pnw)
    i18n = types.ModuleType("slicer.i18n")  # the modules mark their strings with slicer.i18n's tr as _
    i18n.tr, i18n.translate = (lambda text: text), (lambda context, text: text)
    monkeypatch.setitem(sys.modules, "slicer.i18n", i18n)
    monkeypatch.setitem(sys.modules, "qt", types.ModuleType("qt"))
    monkeypatch.setattr(slicer, "mrmlScene", hs.scene, raising=False)
    app = types.SimpleNamespace(cachePath=str(tmp_path / "cache"), connect=lambda *a: None, layoutManager=lambda: None)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    for d in ("OsteoAI", "OsteoAISegment"):
        monkeypatch.syspath_prepend(str(REPO / d))
    _forget_module_files()
    mod = importlib.import_module("OsteoAI")
    mod.OsteoAILogic.moduleName = "OsteoAI"
    yield mod, hs
    _forget_module_files()
    hs.close()


def _forget_module_files():
    """The module files and their Lib panels are imported under this test's stand-ins: forget them after."""
    for name in [n for n in sys.modules if n in ("OsteoAI", "OsteoAISegment") or n.startswith("OsteoAILib.slicer_ui")]:
        sys.modules.pop(name, None)


def _output_folder(tmp_path):
    from OsteoAILib.outputs import write_outputs

    out = synthetic_output()
    write_outputs(out, tmp_path / "out")
    return out, tmp_path / "out"


def test_cli_arguments_are_accepted_by_the_real_cli(module):
    mod, _ = module
    from OsteoAILib.cli import build_parser

    logic = mod.OsteoAILogic()
    p = logic.getParameterNode()
    p.levels, p.calibration, p.kvp, p.phantomPairs, p.radiomics = "T11-L2", "phantom", 100.0, "10:0, 210:150", True
    p.segmenter, p.diagnosticLevels, p.vbmdMethod, p.nKeyImages = "classical", "L1,L2", "calibrated-hu", 3
    argv = logic.cliArguments(p, "/data/ct.nii.gz", "/tmp/out")
    assert argv[:3] == ["-m", "OsteoAILib.cli", "run"]
    args = build_parser().parse_args(argv[2:])
    assert args.input == "/data/ct.nii.gz" and args.out == "/tmp/out"
    assert args.levels == "T11-L2" and args.calibration == "phantom" and args.kvp == 100.0
    assert args.phantom_rods == "10:0,210:150" and args.radiomics and args.segmenter == "classical"
    assert args.key_images == 3 and args.vbmd_method == "calibrated-hu" and args.diagnostic_levels == "L1,L2"


def test_every_panel_choice_is_accepted_by_the_cli(module):
    """The panel's combo boxes list the parameter node's choices (the .ui files list none of their own);
    each one, set on the parameter node, gives a command line the real CLI accepts."""
    import xml.etree.ElementTree as ET

    from OsteoAILib.cli import build_parser
    from OsteoAILib.slicer_ui.parameters import osteoaiParameters

    mod, _ = module
    logic = mod.OsteoAILogic()
    p = logic.getParameterNode()
    root = ET.parse(REPO / "OsteoAI" / "Resources" / "UI" / "OsteoAI.ui").getroot()
    settings, _nodes = osteoaiParameters()
    combos = {c.find("property[@name='SlicerParameterName']/string").text: c for c in root.iter("widget")
              if c.get("class") == "QComboBox"}  # fmt: skip
    assert set(combos) == {name for name, spec in settings.items() if spec[1]}
    for param, combo in combos.items():
        assert not list(combo.iter("item")), f"{param}: the .ui lists choices of its own"
        typ, choices, _limits, default = settings[param]
        for value in choices:
            setattr(p, param, value)
            args = build_parser().parse_args(logic.cliArguments(p, "ct.nii.gz", "out")[2:])  # exits if rejected
            assert value in vars(args).values(), (param, value)
        setattr(p, param, default)


def test_dicom_kvp_goes_to_the_cli(module, monkeypatch):
    mod, hs = module
    out = synthetic_output()
    logic = mod.OsteoAILogic()
    p = logic.getParameterNode()
    p.inputVolume = mrml.add_volume_node(hs.scene, out.volume, "ct")
    assert "--kvp" not in logic.cliArguments(p, "ct.nrrd", "out")
    p.inputVolume.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    db = types.SimpleNamespace(instanceValue=lambda uid, tag: "100" if (uid, tag) == ("1.2.3", "0018,0060") else "")
    monkeypatch.setattr(slicer, "dicomDatabase", db, raising=False)
    argv = logic.cliArguments(p, "ct.nrrd", "out")
    assert argv[argv.index("--kvp") + 1] == "100.0"
    p.kvp = 80.0  # the user's value wins over the tag
    argv = logic.cliArguments(p, "ct.nrrd", "out")
    assert argv[argv.index("--kvp") + 1] == "80.0"


def test_load_results_recompute_and_reapply(module, tmp_path):
    mod, hs = module
    out, folder = _output_folder(tmp_path)
    logic = mod.OsteoAILogic()
    p = logic.getParameterNode()
    p.inputVolume = mrml.add_volume_node(hs.scene, out.volume, "ct")
    p.kvp = 110.0
    logic.loadResults(p, str(folder))
    assert p.roiSegmentation.GetName() == "ct trabecular ROIs"
    np.testing.assert_array_equal(mrml.segmentation_to_labelmap(hs.scene, p.vertebraeSegmentation, p.inputVolume),
                                  out.vertebrae)  # fmt: skip
    assert [r["Level"] for r in mrml.table_to_rows(p.resultsTable)] == ["T12", "L1", "L2"]
    assert "mg/cm&sup3;" in logic.diagnosisHtml(p)
    settings, _ = mrml.read_parameter_node(hs.scene)
    assert settings.kvp == 110.0

    # Recompute after erasing the L1 ROI: that level loses its ROI, nothing else moves.
    before = {r["Level"]: r for r in mrml.table_to_rows(p.resultsTable)}
    mrml.set_segment_mask(p.roiSegmentation, 20, np.zeros(out.rois.shape, bool), p.inputVolume)
    res = logic.recompute(p)
    after = {r["Level"]: r for r in mrml.table_to_rows(p.resultsTable)}
    assert after["L1"]["ROI volume"] == 0 and after["T12"]["Mean"] == before["T12"]["Mean"]
    assert any(q.startswith("no_roi") for q in next(r for r in res.levels if r.level == "L1").qc)

    # A second Apply replaces every result node instead of adding a second set.
    counts = {c: hs.scene.GetNumberOfNodesByClass(c) for c in
              ("vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLMarkupsROINode", "vtkMRMLPlotChartNode",
               "vtkMRMLPlotSeriesNode", "vtkMRMLTextNode", "vtkMRMLMarkupsFiducialNode")}  # fmt: skip
    logic.loadResults(p, str(folder))
    assert {c: hs.scene.GetNumberOfNodesByClass(c) for c in counts} == counts


def test_segment_module_loads_labels_and_replaces_them_on_reapply(module, tmp_path):
    """An ``osteoai segment`` output folder becomes nodes through mrml.spine_segmentation.add_spine_segmentation."""
    import json

    from OsteoAIBaseLib.imageio import write_volume

    _, hs = module
    seg_mod = importlib.import_module("OsteoAISegment")
    seg_mod.OsteoAISegmentLogic.moduleName = "OsteoAISegment"
    out = synthetic_output()
    bodies = out.vertebrae.copy()
    bodies[:, :15] = 0
    write_volume(out.volume, tmp_path / "vertebrae.nii.gz", out.vertebrae.astype(np.int16))
    write_volume(out.volume, tmp_path / "bodies.nii.gz", bodies.astype(np.int16))
    (tmp_path / "segmentation.json").write_text(
        json.dumps(
            {"qc": ["rib_count: 12 pairs"], "segmenter": "fake@1", "levels": [19, 20, 21], "info": {"rib_pairs": 12}}
        )
    )
    logic = seg_mod.OsteoAISegmentLogic()
    p = logic.getParameterNode()
    p.inputVolume = mrml.add_volume_node(hs.scene, out.volume, "ct")
    p.show3D = False
    node = logic.loadResults(p, str(tmp_path))
    assert p.outputSegmentation.GetID() == node.GetID()
    np.testing.assert_array_equal(mrml.segmentation_to_labelmap(hs.scene, node, p.inputVolume), out.vertebrae)
    assert node.GetNodeReference(mrml.ATTR + "bodies").GetName() == "ct vertebral bodies"
    assert json.loads(node.GetAttribute(mrml.ATTR + "qc")) == ["rib_count: 12 pairs"]
    assert node.GetAttribute(mrml.ATTR + "segmenter") == "fake@1"
    logic.loadResults(p, str(tmp_path))
    assert hs.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2  # vertebrae + bodies, once


def test_progress_lines_of_the_cli_are_parsed(module):
    """One progress protocol for both modules: the lines ``osteoai run`` and ``osteoai segment`` print."""
    import io

    from OsteoAILib.commands.progress import TerminalProgress
    from OsteoAILib.slicer_ui.background import parseProgress

    assert parseProgress("PROGRESS  42.0%    3.1s placing trabecular ROIs") == (0.42, "placing trabecular ROIs")
    assert parseProgress("Traceback (most recent call last):") is None
    buf = io.StringIO()  # the exact line the CLI's TerminalProgress writes when not on a terminal
    TerminalProgress(stream=buf)(0.5, "calibrating (auto)")
    assert parseProgress(buf.getvalue().strip()) == (0.5, "calibrating (auto)")


class _Signal:
    def __init__(self):
        self.slots = []

    def connect(self, fn):
        self.slots.append(fn)

    def emit(self, *a):
        for fn in self.slots:
            fn(*a)


class _Env:
    def __init__(self):
        import os

        self.d = dict(os.environ)

    @staticmethod
    def systemEnvironment():
        return _Env()

    def insert(self, k, v):
        self.d[k] = v

    def value(self, k):
        return self.d.get(k, "")


class _Process:
    """qt.QProcess stand-in: runs the command to the end inside start(), then emits the signals."""

    NotRunning, NormalExit, MergedChannels = 0, 0, 1

    def __init__(self):
        self.readyReadStandardOutput, self.finished = _Signal(), _Signal()
        self.env, self._out, self._code = None, b"", None

    def setProcessEnvironment(self, env):
        self.env = env

    def setProcessChannelMode(self, mode):
        pass

    def start(self, program, args):
        import subprocess

        p = subprocess.run(
            [program, *args], env=self.env.d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600
        )
        self._out, self._code = p.stdout, p.returncode
        self.readyReadStandardOutput.emit()
        self.finished.emit(self._code, 0)

    def readAllStandardOutput(self):
        out, self._out = self._out, b""
        return out

    def state(self):
        return self.NotRunning

    def exitStatus(self):
        return self.NormalExit

    def exitCode(self):
        return self._code

    def waitForFinished(self, timeout=-1):
        return True

    def kill(self):
        pass


@pytest.fixture(scope="module")
def small_phantom(phantoms):

    return phantoms(levels="T12-L2", matrix=96, spacing=(2.5, 2.5, 2.5))


@pytest.fixture
def child_process(module, monkeypatch):
    """qt.QProcess replaced by a real subprocess run (see _Process), for the panels' background runs."""
    qt = sys.modules["qt"]
    monkeypatch.setattr(qt, "QProcess", _Process, raising=False)
    monkeypatch.setattr(qt, "QProcessEnvironment", _Env, raising=False)
    slicer.app.processEvents = lambda: None


def test_apply_runs_osteoai_in_a_background_process_on_the_phantom(module, child_process, small_phantom):
    """Apply end to end: input written, `osteoai run` in a child process, progress parsed, nodes made."""
    mod, hs = module
    ph = small_phantom
    logic = mod.OsteoAILogic()
    p = logic.getParameterNode()
    p.inputVolume = mrml.add_volume_node(hs.scene, ph.volume, "phantom")
    p.segmenter = "classical"
    p.nKeyImages = 1
    fractions, done = [], []
    logic.start(p, lambda f, m: fractions.append(f), lambda ok, m: done.append((ok, m)))
    assert done and done[0][0], done
    assert fractions and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    results = mrml.results_from_text(p.resultsText)
    rows = mrml.table_to_rows(p.resultsTable)
    assert [r["Level"] for r in rows] == [lv.level for lv in results.levels]
    truth_levels = {t["level"] for t in ph.truth["levels"]}
    assert {r["Level"] for r in rows} & truth_levels
    seg = mrml.segmentation_to_labelmap(hs.scene, p.vertebraeSegmentation, p.inputVolume)
    assert seg.shape == ph.volume.shape and seg.any()
    # the key image PNG survives the temporary run folder (copied to the cache) and is found again
    png = logic.keyImagePng(p.keyImages, 0)
    assert png and Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segment_apply_runs_in_a_background_process_on_the_phantom(module, child_process, small_phantom):
    _, hs = module
    seg_mod = importlib.import_module("OsteoAISegment")
    seg_mod.OsteoAISegmentLogic.moduleName = "OsteoAISegment"
    ph = small_phantom
    logic = seg_mod.OsteoAISegmentLogic()
    p = logic.getParameterNode()
    p.inputVolume = mrml.add_volume_node(hs.scene, ph.volume, "phantom")
    p.segmenter, p.show3D = "classical", False
    done = []
    logic.start(p, None, lambda ok, m: done.append((ok, m)))
    assert done and done[0][0], done
    lab = mrml.segmentation_to_labelmap(hs.scene, p.outputSegmentation, p.inputVolume)
    # the labelled vertebrae lie on the phantom's spine (overlap with its true vertebra mask)
    assert (lab > 0).any() and ((lab > 0) & (ph.vertebrae > 0)).sum() > 0.5 * (lab > 0).sum()


@pytest.mark.parametrize("name", ["OsteoAI", "OsteoAISegment"])
def test_panels_keep_their_gui_bound_to_the_parameter_node_across_scene_close(module, name):
    from OsteoAILib.slicer_ui.panel import ParameterNodePanel

    mod, hs = module
    seg = importlib.import_module("OsteoAISegment")
    widget_cls = getattr(mod if name == "OsteoAI" else seg, f"{name}Widget")
    logic_cls = getattr(mod if name == "OsteoAI" else seg, f"{name}Logic")
    assert issubclass(widget_cls, ParameterNodePanel)
    logic_cls.moduleName = name
    volume = hs.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    w = widget_cls.__new__(widget_cls)
    ParameterNodePanel.__init__(w, None)
    w.parent = types.SimpleNamespace(isEntered=True)
    w.ui, w.logic = types.SimpleNamespace(), logic_cls()
    redraws = []
    w.updateGui = lambda *a: redraws.append(1)

    w.enter()
    assert w._parameterNode.inputVolume.GetID() == volume.GetID()  # first volume picked for the user
    assert w.ui.bound == 1 and redraws
    w.onSceneStartClose(None, None)
    assert w._parameterNode is None and w.ui.bound == 0
    w.onSceneEndClose(None, None)
    assert w._parameterNode is not None and w.ui.bound == 1
    w.exit()
    assert w.ui.bound == 0


class _InProcessRun:
    """The logic's background run replaced (the logic takes it as an argument): the same ``osteoai`` command
    line, run in this process, then the end reported as BackgroundRun reports it."""

    def __init__(self, onProgress, onFinished):
        self.onProgress, self.onFinished, self.argv = onProgress, onFinished, None

    def start(self, argv, workDir):
        from OsteoAILib.cli import main

        self.argv = argv
        assert argv[:2] == ["-m", "OsteoAILib.cli"]
        code = main(argv[2:])
        self.onProgress(1.0, "done")
        self.onFinished(code == 0, "Done." if code == 0 else f"exit code {code}")

    def running(self):
        return False

    def cancel(self):
        pass


def test_segment_logic_runs_the_segment_command_it_is_given_a_runner_for(module, small_phantom):
    _, hs = module
    seg_mod = importlib.import_module("OsteoAISegment")
    seg_mod.OsteoAISegmentLogic.moduleName = "OsteoAISegment"
    logic = seg_mod.OsteoAISegmentLogic(runner=_InProcessRun)
    p = logic.getParameterNode()
    p.inputVolume = mrml.add_volume_node(hs.scene, small_phantom.volume, "phantom")
    p.segmenter, p.show3D = "classical", False
    done = []
    run = logic.start(p, None, lambda ok, m: done.append((ok, m)))
    assert run.argv[2] == "segment" and run.argv[run.argv.index("--segmenter") + 1] == "classical"
    assert "--cancel-file" in run.argv
    assert done and done[0][0] and done[0][1].startswith("Done:"), done
    lab = mrml.segmentation_to_labelmap(hs.scene, p.outputSegmentation, p.inputVolume)
    assert ((lab > 0) & (small_phantom.vertebrae > 0)).sum() > 0.5 * (lab > 0).sum()
    assert p.outputSegmentation.GetNodeReference(mrml.ATTR + "bodies") is not None
