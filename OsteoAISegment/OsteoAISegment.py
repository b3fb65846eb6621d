"""OsteoAISegment: segment and label the thoracic and lumbar vertebrae of a CT (3D Slicer module).

The work runs in a background ``PythonSlicer`` process (the GUI stays responsive, Cancel kills it);
the process prints ``OSTEOAI_PROGRESS<TAB>fraction<TAB>message`` lines that drive the progress bar.
Results come back through ``OsteoAILib.mrml.spine_segmentation``. ``BackgroundRun`` and the dependency helpers
here are reused by the OsteoAI module.
"""

import json
import logging
import os
import shutil
import sys
import tempfile
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

PROGRESS_TAG = "OSTEOAI_PROGRESS"
MODULE_DIR = os.path.dirname(os.path.abspath(__file__))

# Packages the background process needs beyond what Slicer ships: Resources/requirements.txt (lower bounds;
# numpy and SimpleITK are Slicer's own and never replaced), pyradiomics only for Radiomics, PyTorch through
# the PyTorch extension's PyTorch Utils.
REQUIREMENTS_FILE = os.path.join(MODULE_DIR, "Resources", "requirements.txt")
RADIOMICS_REQUIREMENTS_FILE = os.path.join(MODULE_DIR, "Resources", "requirements-radiomics.txt")
TORCH_REQUIREMENT = ">=2.2"
IMPORT_NAMES = {"pyyaml": "yaml", "pyradiomics": "radiomics"}  # distribution -> import name, where they differ


def libraryPaths():
    """Folders that hold OsteoAILib and OsteoAISegmentLib (the extension's two module folders)."""
    paths = [MODULE_DIR]
    try:
        paths.append(os.path.dirname(slicer.modules.osteoai.path))
    except AttributeError:  # OsteoAI module not loaded: look next to this module (source tree layout)
        paths.append(os.path.join(os.path.dirname(MODULE_DIR), "OsteoAI"))
    return [p for p in paths if os.path.isdir(p)]


def writeInput(volumeNode, path):
    """Write the volume (any linear parent transform applied) for the background process.

    Not slicer.util.saveNode: that would point the node's storage at a temporary file.
    """
    import OsteoAILib.mrml as coremrml
    from OsteoAIBaseLib.imageio import write_volume

    write_volume(coremrml.volume_from_node(volumeNode), path)


def readRequirements(path):
    """Requirement strings of a requirements file (comments and blank lines left out)."""
    with open(path) as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


def _requirementName(req):
    import re

    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]


def _missing(requirements):
    """The requirements not satisfied here: ``slicer.packaging.pip_check`` (versions too) where this Slicer
    has it, else whether the package imports."""
    try:
        from slicer.packaging import pip_check
    except ImportError:  # Slicer before slicer.packaging
        import importlib.util

        def pip_check(req):
            name = _requirementName(req).lower()
            return importlib.util.find_spec(IMPORT_NAMES.get(name, name)) is not None

    return [req for req in requirements if not pip_check(req)]


def missingDependencies(radiomics=False):
    """Names of the missing packages (``torch`` first); pyradiomics only when ``radiomics``."""
    import importlib.util

    files = [REQUIREMENTS_FILE] + ([RADIOMICS_REQUIREMENTS_FILE] if radiomics else [])
    missing = ["torch"] if importlib.util.find_spec("torch") is None else []
    return missing + [_requirementName(r) for f in files for r in _missing(readRequirements(f))]


def installDependencies(askConfirmation=True, radiomics=False):
    """Install what is missing, the way Slicer extensions do: PyTorch through PyTorch Utils (it picks the
    CUDA build), the rest from Resources/requirements.txt through ``slicer.packaging.pip_ensure`` (the user
    is asked and sees the progress); pyradiomics only when ``radiomics``. A constraints file keeps Slicer's
    numpy and SimpleITK as they are. Raises RuntimeError with one line when something stays missing."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        try:
            import PyTorchUtils

            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if not torchLogic.torchInstalled():
                torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=TORCH_REQUIREMENT)
        except ImportError:
            raise RuntimeError(
                _("OsteoAI needs PyTorch: install the PyTorch extension (Extensions Manager), restart Slicer, "
                  "then press Install again.")
            ) from None
    files = [REQUIREMENTS_FILE] + ([RADIOMICS_REQUIREMENTS_FILE] if radiomics else [])
    todo = _missing([r for f in files for r in readRequirements(f)])
    if todo:
        constraints = os.path.join(tempfile.mkdtemp(prefix="osteoai-constraints-"), "constraints.txt")
        with open(constraints, "w") as f:
            for dist in ("numpy", "SimpleITK"):
                try:
                    f.write(f"{dist}=={importlib.metadata.version(dist)}\n")
                except importlib.metadata.PackageNotFoundError:
                    pass
        try:
            from slicer.packaging import pip_ensure
        except ImportError:  # Slicer before slicer.packaging
            pip_ensure = None
        try:
            if pip_ensure is not None:
                pip_ensure(todo, constraints=constraints, prompt_install=askConfirmation, requester="OsteoAI")
            else:  # ask, then pip
                if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    _("OsteoAI needs these Python packages. Install them now?") + "\n\n" + "\n".join(todo)
                ):
                    raise RuntimeError(_("User declined package installation"))
                slicer.util.pip_install(todo + ["-c", constraints])
        finally:
            shutil.rmtree(os.path.dirname(constraints), ignore_errors=True)
    still = missingDependencies(radiomics=radiomics)
    if still:
        raise RuntimeError(_("Missing Python packages: {packages} (press Install in Dependencies)").format(
            packages=", ".join(still)))


_CLI_PROGRESS = None


def parseProgress(line):
    """``(fraction, message)`` from a progress line, else None.

    Two forms: the snippets' ``OSTEOAI_PROGRESS<TAB>0.42<TAB>msg`` and ``osteoai run``'s
    ``PROGRESS  42.0%   3.1s msg``.
    """
    global _CLI_PROGRESS
    import re

    if line.startswith(PROGRESS_TAG + "\t"):
        _, fraction, message = (line.split("\t", 2) + [""])[:3]
        try:
            return float(fraction), message
        except ValueError:
            return None
    if _CLI_PROGRESS is None:
        _CLI_PROGRESS = re.compile(r"^PROGRESS\s+([\d.]+)%\s+[\d.]+s\s?(.*)$")
    m = _CLI_PROGRESS.match(line.strip())
    if m:
        return float(m.group(1)) / 100.0, m.group(2)
    return None


class BackgroundRun:
    """Runs a Python snippet in a ``PythonSlicer`` process; parses progress; reports the end once.

    ``onProgress(fraction, message)``, ``onFinished(ok: bool, message: str)``. Cancel kills the
    process (the snippet also stops at its next progress report if the cancel file appears).
    """

    def __init__(self, onProgress, onFinished):
        self.onProgress = onProgress
        self.onFinished = onFinished
        self.process = None
        self.workDir = None
        self._buffer = ""
        self._lastError = ""
        self._cancelled = False

    def start(self, argv, workDir):
        """Run ``PythonSlicer <argv>`` with the extension's Libs importable; ``workDir`` holds its files."""
        self.workDir = workDir
        python = shutil.which("PythonSlicer") or sys.executable
        env = qt.QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONPATH", os.pathsep.join(p for p in libraryPaths() + [env.value("PYTHONPATH")] if p))
        env.insert("PYTHONUNBUFFERED", "1")
        self.process = qt.QProcess()
        self.process.setProcessEnvironment(env)
        self.process.setProcessChannelMode(qt.QProcess.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.start(python, argv)

    def startCode(self, code, args):
        """Run a Python snippet that reads its arguments from ``args.json`` (``sys.argv[1]``)."""
        args["cancel_file"] = os.path.join(args["work_dir"], "cancel")
        path = os.path.join(args["work_dir"], "args.json")
        with open(path, "w") as f:
            json.dump(args, f)
        self.start(["-c", code, path], args["work_dir"])

    def running(self):
        return self.process is not None and self.process.state() != qt.QProcess.NotRunning

    def cancel(self):
        """Stop the job now: the cancel file first (the job stops at its next stage boundary if it
        survives), then the whole process tree. ``PythonSlicer`` is a launcher that starts the real
        interpreter as a child: killing only the launcher would leave the work running."""
        if not self.running():
            return
        self._cancelled = True
        open(os.path.join(self.workDir, "cancel"), "w").close()
        from OsteoAILib.commands.progress import kill_process_tree

        kill_process_tree(self.process.processId())
        self.process.kill()

    def waitForFinished(self, timeoutMs=-1):
        if self.process is not None:
            self.process.waitForFinished(timeoutMs)
            slicer.app.processEvents()

    def _read(self):
        self._buffer += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            parsed = parseProgress(line)
            if parsed is not None:
                self.onProgress(*parsed)
            elif line.strip():
                logging.info(line)
                self._lastError = line.strip()

    def _finished(self, *args):
        self._read()
        ok = self.process.exitStatus() == qt.QProcess.NormalExit and self.process.exitCode() == 0
        if self._cancelled:
            self.onFinished(False, _("Cancelled."))
        elif ok:
            self.onFinished(True, _("Done."))
        else:
            self.onFinished(False, self._lastError or _("failed (exit code {code})").format(
                code=self.process.exitCode()))


# Runs in the background process. Reads args.json, segments, writes labels.npz on the input grid.
SEGMENT_CODE = r"""
import json, os, sys
import numpy as np
args = json.load(open(sys.argv[1]))
def progress(f, msg=""):
    print("OSTEOAI_PROGRESS\t%.4f\t%s" % (f, msg), flush=True)
def cancel():
    return os.path.exists(args["cancel_file"])
try:
    from OsteoAIBaseLib.imageio import read_volume, to_canonical, from_canonical
    from OsteoAISegmentLib.api import segment_spine
    from OsteoAIBaseLib.errors import OsteoAIError
    vol = read_volume(args["input"])
    can = to_canonical(vol)
    seg = segment_spine(can, method=args["segmenter"], device=args["device"], progress=progress, cancel=cancel)
    vert = from_canonical(seg.vertebrae.astype(np.int16), can, vol)
    bodies = from_canonical(seg.bodies.astype(np.int16), can, vol)
    np.savez_compressed(os.path.join(args["work_dir"], "labels.npz"), vertebrae=vert, bodies=bodies)
    json.dump({"qc": seg.qc, "segmenter": seg.segmenter, "levels": [int(x) for x in seg.levels]},
              open(os.path.join(args["work_dir"], "segmentation.json"), "w"))
    progress(1.0, "segmentation done")
except OsteoAIError as e:
    print(str(e), file=sys.stderr)
    sys.exit(1)
"""


#
# Module
#


class OsteoAISegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("OsteoAI Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["OsteoAI contributors"]
        self.parent.helpText = _("""
Segments and labels the thoracic and lumbar vertebrae of a chest or abdomen CT (VerSe level names,
T12 found from the last rib pair). Produces a segmentation "&lt;volume&gt; vertebrae" with one segment
per level and, optionally, the vertebral bodies. Correct labels by renaming a segment ("L3 vertebra");
OsteoAI uses the edited segmentation.
See the <a href="https://github.com/osteoai/osteoai">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
OsteoAI is open source. The segmentation model is trained with MONAI on public data (VerSe,
TotalSegmentator); terminology codes follow SNOMED CT as in 3D Slicer's terminology files.
""")


@parameterNodeWrapper
class OsteoAISegmentParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    segmenter: Annotated[str, Choice(["auto", "model", "classical", "totalsegmentator"])] = "auto"
    device: Annotated[str, Choice(["cpu", "cuda"])] = "cpu"
    addBodies: bool = True
    show3D: bool = True
    outputSegmentation: vtkMRMLSegmentationNode


#
# Widget
#


class ParameterNodePanel(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Parameter-node lifecycle shared by the OsteoAI panels.

    The GUI stays bound to the logic's parameter node across module switches and scene closes
    (Slicer's scripted-module template); subclasses create ``self.ui``/``self.logic`` in setup(),
    call ``self.observeSceneClose()`` and redraw their buttons in ``updateGui``."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def observeSceneClose(self):
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def cleanup(self):
        self.removeObservers()
        if self.logic:
            self.logic.cancel()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self._disconnectGui()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def _disconnectGui(self):
        # "is not None": the first GUI tag of a parameter node is 0. Left connected, a second connectGui
        # (module re-entered) clears the combo boxes under the old connectors, which write their last choice.
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)

    def setParameterNode(self, node):
        self._disconnectGui()
        self._parameterNode = node
        if node:
            self._parameterNodeGuiTag = node.connectGui(self.ui)
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGui)
            self.updateGui()

    def updateGui(self, caller=None, event=None):
        raise NotImplementedError


class OsteoAISegmentWidget(ParameterNodePanel):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/OsteoAISegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = OsteoAISegmentLogic()
        self.observeSceneClose()
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.installButton.connect("clicked(bool)", self.onInstall)
        self.initializeParameterNode()
        self.updateDependencyStatus()

    def updateGui(self, caller=None, event=None):
        busy = self.logic.running()
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = ready and not busy
        self.ui.cancelButton.enabled = busy
        if not busy and not ready:
            self.ui.statusLabel.text = _("Select an input CT.")

    def updateDependencyStatus(self):
        missing = missingDependencies()
        self.ui.dependencyStatusLabel.text = (
            _("All dependencies are installed.")
            if not missing
            else _("Missing (Install, or Apply, asks before installing): {packages}").format(
                packages=", ".join(missing))
        )

    def onInstall(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to install dependencies."), waitCursor=True):
            installDependencies()
        self.updateDependencyStatus()

    def onApply(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            if missingDependencies():
                installDependencies()
                self.updateDependencyStatus()
            self.ui.progressBar.visible = True
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Starting...")
            self.logic.start(self._parameterNode, self.onProgress, self.onFinished)
        self.updateGui()

    def onCancel(self):
        self.logic.cancel()

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onFinished(self, ok, message):
        self.ui.progressBar.visible = ok
        self.ui.statusLabel.text = message
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        if ok and node:
            import OsteoAILib.mrml.spine_segmentation as segmrml

            qc = segmrml.qc_of(node)
            self.ui.qcLabel.text = _("QC: {flags}").format(flags="; ".join(qc) if qc else _("no flags"))
        self.updateGui()


#
# Logic
#


class OsteoAISegmentLogic(ScriptedLoadableModuleLogic):
    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.run = None

    def getParameterNode(self):
        return OsteoAISegmentParameterNode(super().getParameterNode())

    def running(self):
        return self.run is not None and self.run.running()

    def cancel(self):
        if self.run:
            self.run.cancel()

    def start(self, parameterNode, onProgress=None, onFinished=None):
        """Segment ``parameterNode.inputVolume`` in a background process; add the nodes when it ends."""
        volumeNode = parameterNode.inputVolume
        if not volumeNode:
            raise ValueError(_("Select an input CT."))
        if self.running():
            raise RuntimeError(_("A segmentation is already running."))
        workDir = tempfile.mkdtemp(prefix="osteoai-seg-")
        inputPath = os.path.join(workDir, "input.nrrd")
        writeInput(volumeNode, inputPath)

        def finished(ok, message):
            try:
                if ok:
                    self.loadResults(parameterNode, workDir)
                    message = _("Done: {count} vertebrae.").format(
                        count=parameterNode.outputSegmentation.GetSegmentation().GetNumberOfSegments())
            except Exception as e:  # shown in the status line; the traceback goes to the log
                logging.exception("loading the segmentation failed")
                ok, message = False, str(e)
            finally:
                shutil.rmtree(workDir, ignore_errors=True)
            if onFinished:
                onFinished(ok, message)

        self.run = BackgroundRun(onProgress or (lambda f, m: None), finished)
        self.run.startCode(SEGMENT_CODE, {"input": inputPath, "work_dir": workDir, "segmenter": parameterNode.segmenter,
                                      "device": parameterNode.device})  # fmt: skip
        return self.run

    def loadResults(self, parameterNode, workDir):
        import numpy as np
        import OsteoAILib.mrml as coremrml

        volumeNode = parameterNode.inputVolume
        labels = np.load(os.path.join(workDir, "labels.npz"))
        info = json.load(open(os.path.join(workDir, "segmentation.json")))
        old = parameterNode.outputSegmentation
        if old:  # a second Apply replaces the previous result, bodies included
            bodies = old.GetNodeReference(coremrml.ATTR + "bodies")
            if bodies is not None:
                slicer.mrmlScene.RemoveNode(bodies)
            slicer.mrmlScene.RemoveNode(old)
        scene = slicer.mrmlScene
        vert = coremrml.add_vertebrae_segmentation(scene, labels["vertebrae"], volumeNode, surface=parameterNode.show3D)
        vert.SetAttribute(coremrml.ATTR + "segmenter", info.get("segmenter", ""))
        vert.SetAttribute(coremrml.ATTR + "qc", json.dumps(info.get("qc", [])))
        if parameterNode.addBodies and labels["bodies"].any():
            bodies = coremrml.add_vertebrae_segmentation(
                scene, labels["bodies"], volumeNode, f"{volumeNode.GetName()} vertebral bodies"
            )
            bodies.SetAttribute(coremrml.ATTR + "kind", "bodies")
            vert.SetNodeReferenceID(coremrml.ATTR + "bodies", bodies.GetID())
        parameterNode.outputSegmentation = vert
        return vert


#
# Test
#


class OsteoAISegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_phantom()

    def test_segment_phantom(self):
        """Whole flow on the digital phantom: background process, progress, nodes, labels."""
        if missingDependencies():
            self.delayDisplay("Skipped: dependencies not installed (press Install in the module)")
            return
        import numpy as np
        from OsteoAILib.phantom import PhantomParams, make_phantom

        ph = make_phantom(PhantomParams(levels="T12-L2", matrix=128, spacing=(2, 2, 2)))
        import OsteoAILib.mrml as coremrml

        volumeNode = coremrml.add_volume_node(slicer.mrmlScene, ph.volume, "phantom")
        logic = OsteoAISegmentLogic()
        p = logic.getParameterNode()
        p.inputVolume = volumeNode
        p.segmenter = "classical"
        p.show3D = False
        fractions = []
        done = []
        run = logic.start(p, lambda f, m: fractions.append(f), lambda ok, m: done.append((ok, m)))
        run.waitForFinished(600000)
        self.assertTrue(done and done[0][0], done)
        self.assertTrue(fractions and fractions[-1] == 1.0)
        from OsteoAIBaseLib import levels

        labels = coremrml.segmentation_to_labelmap(slicer.mrmlScene, p.outputSegmentation, volumeNode)
        truth = ph.vertebrae
        # Against the phantom's own truth: the levels asked for (the phantom adds cut margin levels around
        # them) are found, named right (most of each segment lies in the true vertebra of that name) and
        # overlap it.
        for name in ph.truth["requested_levels"]:
            lab = levels.label(name)
            mask = labels == lab
            self.assertTrue(mask.any(), f"{name} not found")
            under = np.bincount(truth[mask].clip(0), minlength=lab + 1)
            under[0] = 0
            self.assertEqual(int(under.argmax()), lab, f"{name} is named wrong")
            dice = 2 * np.logical_and(mask, truth == lab).sum() / max(1, mask.sum() + (truth == lab).sum())
            self.assertGreater(dice, 0.45, f"{name}: Dice {dice:.2f}")
        self.delayDisplay("OsteoAISegment phantom test passed")
