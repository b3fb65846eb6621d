"""The OsteoAISegment panel and logic: ``osteoai segment`` in a background process, then the vertebra
segmentation nodes through :func:`OsteoAILib.mrml.spine_segmentation.add_spine_segmentation`."""

import json
import os

import slicer
from slicer.i18n import tr as _

from .background import BackgroundLogic, BackgroundRun, osteoaiCommand
from .dependencies import installDependencies
from .panel import ParameterNodePanel, parameterNodeClass
from .parameters import segmentParameters

OsteoAISegmentParameterNode = parameterNodeClass("OsteoAISegmentParameterNode", *segmentParameters())


class OsteoAISegmentWidget(ParameterNodePanel):
    def setup(self):
        self.setupPanel("UI/OsteoAISegment.ui", OsteoAISegmentLogic())

    def updateGui(self, caller=None, event=None):
        busy = self.logic.running()
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = ready and not busy
        self.ui.cancelButton.enabled = busy
        if not busy and not ready:
            self.ui.statusLabel.text = _("Select an input CT.")

    def dependencyStatusText(self, missing):
        if not missing:
            return _("All dependencies are installed.")
        return _("Missing (Install, or Apply, asks before installing): {packages}").format(packages=", ".join(missing))

    def onInstall(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to install dependencies."), waitCursor=True):
            installDependencies()
        self.updateDependencyStatus()

    def onApply(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            self.installMissing()
            self.showStarting(_("Starting..."))
            self.logic.start(self._parameterNode, self.onProgress, self.onFinished)
        self.updateGui()

    def onFinished(self, ok, message):
        self.showEnd(ok, message)
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        if ok and node:
            from ..mrml.spine_segmentation import qc_of

            qc = qc_of(node)
            self.ui.qcLabel.text = _("QC: {flags}").format(flags="; ".join(qc) if qc else _("no flags"))
        self.updateGui()


class OsteoAISegmentLogic(BackgroundLogic):
    """Segments in a background ``osteoai segment`` process. ``runner``: the background-run class
    (:class:`~OsteoAILib.slicer_ui.background.BackgroundRun`, or a stand-in with its methods in tests)."""

    parameterNodeClass = OsteoAISegmentParameterNode

    @staticmethod
    def cliArguments(p, inputPath, outDir, workDir):
        """``osteoai segment`` arguments for the panel's settings."""
        return osteoaiCommand(
            "segment",
            inputPath,
            "--out",
            outDir,
            "--segmenter",
            p.segmenter,
            "--device",
            p.device,
            "--cancel-file",
            BackgroundRun.cancelFile(workDir),
        )

    def start(self, parameterNode, onProgress=None, onFinished=None):
        """Segment ``parameterNode.inputVolume`` in a background process; add the nodes when it ends."""
        if not parameterNode.inputVolume:
            raise ValueError(_("Select an input CT."))
        if self.running():
            raise RuntimeError(_("A segmentation is already running."))

        def loaded(outDir):
            self.loadResults(parameterNode, outDir)
            return _("Done: {count} vertebrae.").format(
                count=parameterNode.outputSegmentation.GetSegmentation().GetNumberOfSegments()
            )

        return self.startRun(
            parameterNode,
            "osteoai-seg-",
            lambda *paths: self.cliArguments(parameterNode, *paths),
            loaded,
            "loading the segmentation failed",
            onProgress,
            onFinished,
        )

    def loadResults(self, parameterNode, outDir):
        """Nodes from an ``osteoai segment`` output folder (labelmaps on the input volume's grid); a second
        Apply replaces the previous result, bodies included."""
        import numpy as np
        import SimpleITK as sitk
        from OsteoAISegmentLib.segmentation import SpineSegmentation

        import OsteoAILib.mrml as coremrml

        from ..mrml.spine_segmentation import add_spine_segmentation

        volumeNode = parameterNode.inputVolume

        def labels(name):
            return sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(outDir, f"{name}.nii.gz"))).astype(np.int16)

        with open(os.path.join(outDir, "segmentation.json")) as f:
            info = json.load(f)
        seg = SpineSegmentation(
            vertebrae=labels("vertebrae"),
            bodies=labels("bodies"),
            levels=info.get("levels", []),
            qc=info.get("qc", []),
            info=info.get("info", {}),
            segmenter=info.get("segmenter", ""),
        )
        old = parameterNode.outputSegmentation
        if old:
            bodies = old.GetNodeReference(coremrml.ATTR + "bodies")
            if bodies is not None:
                slicer.mrmlScene.RemoveNode(bodies)
            slicer.mrmlScene.RemoveNode(old)
        # the labelmaps are on the input grid already: the volume itself is their "canonical" grid
        nodes = add_spine_segmentation(
            slicer.mrmlScene,
            seg,
            coremrml.volume_from_node(volumeNode),
            volumeNode,
            bodies=parameterNode.addBodies,
            surface=parameterNode.show3D,
        )
        parameterNode.outputSegmentation = nodes["vertebrae"]
        return nodes["vertebrae"]
