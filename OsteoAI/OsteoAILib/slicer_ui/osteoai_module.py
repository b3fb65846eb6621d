"""The OsteoAI panel and logic: ``osteoai run`` in a background process, its output folder as scene nodes
(through :mod:`OsteoAILib.mrml`), Recompute after an ROI edit (:mod:`OsteoAILib.remeasure` through
``mrml.recompute``) and the Learn section."""

import json
import os
import shutil

import slicer
from slicer.i18n import tr as _

from ..options import Settings, options_from_settings
from ..options import cli_arguments as options_cli_arguments
from .background import BackgroundLogic, BackgroundRun, osteoaiCommand
from .dependencies import installDependencies, missingDependencies
from .panel import ParameterNodePanel, parameterNodeClass
from .parameters import osteoaiParameters

CALIBRATION_TABLE_REF = "OsteoAI.calibrationFitTable"
CALIBRATION_CHART_REF = "OsteoAI.calibrationFitChart"

# Every setting of the option registry that the panel offers, and the nodes it works on.
OsteoAIParameterNode = parameterNodeClass("OsteoAIParameterNode", *osteoaiParameters())


def teachingHtml():
    """The Learn section (translatable)."""
    return _("""
<h3>What OsteoAI measures</h3>
<p><b>Cortical bone</b> is the thin dense shell of the vertebra (several hundred HU up to 1000+ HU).
<b>Trabecular (cancellous) bone</b> is the sponge inside the vertebral body; it turns over several
times faster than cortical bone, so bone loss shows there first. OsteoAI measures only a
trabecular ROI in the middle of the body, away from the shell, the endplates and the basivertebral
vein. <i>Cortical vs trabecular</i> shows both on this case in a bone window.</p>
<p><b>Calibration.</b> A CT number (HU) depends on the scanner and the tube voltage. Without a
phantom in the scan, OsteoAI uses tissues of known composition in the same scan (air, fat, muscle,
blood) and fits HU<sub>true</sub> = slope &times; HU + intercept; <i>Show the calibration fit</i>
plots them. The corrected HU are then converted to mineral density (mg/cm&sup3; of calcium
hydroxyapatite) with the mineral sensitivity at the scan's kVp.</p>
<p><b>Categories</b> (ACR practice parameter for QCT, mean of two lumbar levels):
<b>&gt; 120 mg/cm&sup3;</b> normal; <b>80 to 120</b> low bone mass (osteopenia);
<b>&lt; 80</b> osteoporosis. These QCT thresholds are not T-scores: DXA's WHO T-score thresholds do
not apply to vBMD. A fractured vertebra reads falsely dense and is excluded from the diagnosis.</p>
<p>Opportunistic screening flags patients for a proper work-up; it does not replace a diagnosis.</p>
""")


class OsteoAIWidget(ParameterNodePanel):
    def setup(self):
        clicked = [
            (name, "clicked(bool)", slot)
            for name, slot in (
                ("recomputeButton", self.onRecompute),
                ("editRoisButton", self.onEditRois),
                ("showBoneButton", self.onShowBone),
                ("showCalibrationButton", self.onShowCalibration),
            )
        ]
        self.setupPanel(
            "UI/OsteoAI.ui", OsteoAILogic(), clicked + [("keyImageList", "currentRowChanged(int)", self.onKeyImage)]
        )
        self.ui.teachingText.setHtml(teachingHtml())

    def updateGui(self, caller=None, event=None):
        p = self._parameterNode
        busy = self.logic.running()
        hasResults = bool(p and p.resultsText and p.roiSegmentation)
        self.ui.applyButton.enabled = bool(p and p.inputVolume) and not busy
        self.ui.cancelButton.enabled = busy
        for b in (
            self.ui.recomputeButton,
            self.ui.editRoisButton,
            self.ui.showBoneButton,
            self.ui.showCalibrationButton,
        ):
            b.enabled = hasResults and not busy
        self.ui.diagnosisLabel.text = self.logic.diagnosisHtml(p) if hasResults else _("No result yet.")
        self._fillKeyImages()

    def _fillKeyImages(self):
        p = self._parameterNode
        self.ui.keyImageList.blockSignals(True)
        self.ui.keyImageList.clear()
        if p and p.keyImages:
            import OsteoAILib.mrml as coremrml

            for k in coremrml.key_image_positions(p.keyImages):
                self.ui.keyImageList.addItem(k.get("title") or k.get("name"))
        self.ui.keyImageList.blockSignals(False)

    def dependencyStatusText(self, missing):
        text = (
            _("Missing (Install, or Apply, asks before installing): {packages}").format(packages=", ".join(missing))
            if missing
            else _("All dependencies are installed.")
        )
        if missingDependencies(radiomics=True)[len(missing) :]:
            text += "<br>" + _(
                "Optional, for Radiomics: pyradiomics is not installed (installed when Radiomics is used)."
            )
        return text

    def onInstall(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to install dependencies."), waitCursor=True):
            installDependencies(radiomics=bool(self._parameterNode and self._parameterNode.radiomics))
        self.updateDependencyStatus()

    def onApply(self):
        with slicer.util.tryWithErrorDisplay(_("Failed to start the screening."), waitCursor=True):
            self.installMissing(radiomics=bool(self._parameterNode and self._parameterNode.radiomics))
            self.showStarting(_("Starting..."))
            self.logic.start(self._parameterNode, self.onProgress, self.onFinished)
        self.updateGui()

    def onFinished(self, ok, message):
        self.showEnd(ok, message)
        if ok:
            self.logic.showResults(self._parameterNode)
        self.updateGui()

    def onRecompute(self):
        with slicer.util.tryWithErrorDisplay(_("Recompute failed."), waitCursor=True):
            self.logic.recompute(self._parameterNode)
            self.ui.statusLabel.text = _("Recomputed from the edited ROIs.")
        self.updateGui()

    def onEditRois(self):
        p = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.roiSegmentation)
        editor.setSourceVolumeNode(p.inputVolume)

    def onKeyImage(self, row):
        p = self._parameterNode
        if p and p.keyImages and row >= 0:
            self.logic.jumpToKeyImage(p.keyImages, row)
            path = self.logic.keyImagePng(p.keyImages, row)
            if path:
                import qt

                pixmap = qt.QPixmap(path)
                self.ui.keyImagePreview.setPixmap(pixmap.scaledToWidth(max(200, self.ui.keyImageList.width)))
            else:
                self.ui.keyImagePreview.clear()

    def onShowBone(self):
        with slicer.util.tryWithErrorDisplay(_("Cannot show the bone comparison.")):
            c = self.logic.showCorticalVsTrabecular(self._parameterNode)
            if c and c["trabecular_hu"] is not None and c["cortical_hu"] is not None:
                cortical, trabecular = c["cortical_hu"], c["trabecular_hu"]
                text = _("{level}: cortical shell {cortical} HU, trabecular ROI {trabecular} HU.")
                self.ui.statusLabel.text = text.format(
                    level=c["level"], cortical=f"{cortical:.0f}", trabecular=f"{trabecular:.0f}"
                )

    def onShowCalibration(self):
        with slicer.util.tryWithErrorDisplay(_("Cannot show the calibration fit.")):
            if not self.logic.showCalibrationFit(self._parameterNode):
                self.ui.statusLabel.text = _("This result has no calibration references (method: none).")


class OsteoAILogic(BackgroundLogic):
    """Runs the screening in a background ``osteoai run`` process and maps its results to the scene (through
    OsteoAILib.mrml). ``runner``: the background-run class (:class:`~OsteoAILib.slicer_ui.background.BackgroundRun`,
    or a stand-in with its methods in tests)."""

    parameterNodeClass = OsteoAIParameterNode

    @staticmethod
    def settings(p):
        return Settings(**{name: getattr(p, name) for name in Settings.__dataclass_fields__})

    @staticmethod
    def cliArguments(p, inputPath, outDir):
        """``osteoai run`` arguments for the panel's settings (generated from the option registry, validated
        by the core's own parser); the DICOM tube voltage when the panel leaves kVp unset."""
        opts = options_from_settings(OsteoAILogic.settings(p))  # raises InputError on a typo
        opts.kvp = opts.kvp or OsteoAILogic.dicomKvp(p.inputVolume)
        return osteoaiCommand("run", inputPath, "--out", outDir, *options_cli_arguments(opts))

    @staticmethod
    def dicomKvp(volumeNode):
        """KVP (0018,0060) of a volume loaded through Slicer's DICOM module, else None.

        The NRRD handed to the background process carries no DICOM tags, and the calibration
        depends on the tube voltage.
        """
        uids = volumeNode.GetAttribute("DICOM.instanceUIDs") if volumeNode is not None else None
        db = getattr(slicer, "dicomDatabase", None)
        if not uids or db is None:
            return None
        try:
            return float(db.instanceValue(uids.split()[0], "0018,0060"))
        except (ValueError, TypeError):
            return None

    def start(self, p, onProgress=None, onFinished=None):
        if not p.inputVolume:
            raise ValueError(_("Select an input CT."))
        if self.running():
            raise RuntimeError(_("A screening is already running."))
        if p.radiomics:  # before any work, not as an error at the end of the run
            if "pyradiomics" in missingDependencies(radiomics=True):
                raise RuntimeError(_("Radiomics needs pyradiomics, which is not installed: press Install in "
                                     "Dependencies, or untick Radiomics."))  # fmt: skip

        def argv(inputPath, outDir, workDir):
            # The CLI stops at its next stage boundary once this file exists (BackgroundRun.cancel writes it).
            return self.cliArguments(p, inputPath, outDir) + ["--cancel-file", BackgroundRun.cancelFile(workDir)]

        def loaded(outDir):
            self.loadResults(p, outDir)
            return _("Done.") + " " + self.diagnosisText(p)

        return self.startRun(p, "osteoai-", argv, loaded, "loading the OsteoAI results failed", onProgress, onFinished)

    def loadResults(self, p, outDir):
        """Nodes from an ``osteoai run`` output folder, on the input volume's grid."""
        import numpy as np
        import SimpleITK as sitk

        import OsteoAILib.mrml as coremrml
        from OsteoAILib.pipeline import PipelineOutput
        from OsteoAILib.results import Results

        with open(os.path.join(outDir, "results.json")) as f:
            results = Results.from_dict(json.load(f))
        vert = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(outDir, "vertebrae.nii.gz"))).astype(np.int16)
        rois = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(outDir, "trabecular_rois.nii.gz"))).astype(np.int16)
        out = PipelineOutput(
            results=results, volume=coremrml.volume_from_node(p.inputVolume), vertebrae=vert, rois=rois
        )
        self.removeResults(p)
        nodes = coremrml.add_pipeline_output(
            slicer.mrmlScene, out, volume_node=p.inputVolume, settings=self.settings(p), surface=True
        )
        self._copyKeyImagePngs(nodes.key_images, outDir, p.inputVolume)
        p.vertebraeSegmentation = nodes.vertebrae
        p.roiSegmentation = nodes.rois
        p.resultsTable = nodes.table
        p.resultsText = nodes.text
        p.keyImages = nodes.key_images
        return nodes

    @staticmethod
    def _copyKeyImagePngs(node, outDir, volumeNode):
        # The PNGs outlive the temporary folder in Slicer's cache, referenced from the node.
        src = os.path.join(outDir, "key_images")
        if node is None or not os.path.isdir(src):
            return
        dst = os.path.join(slicer.app.cachePath, "OsteoAI", volumeNode.GetID(), "key_images")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        node.SetAttribute("OsteoAI.keyImagesDir", dst)

    @staticmethod
    def removeResults(p):
        """Previous results of this volume go: a second Apply must not leave two answers."""
        scene = slicer.mrmlScene
        for name in ("vertebraeSegmentation", "roiSegmentation", "resultsTable", "resultsText", "keyImages"):
            node = getattr(p, name)
            if node is None:
                continue
            if name == "roiSegmentation":
                import OsteoAILib.mrml as coremrml

                for box in coremrml.roi_boxes_of(scene, node).values():
                    scene.RemoveNode(box)
            if name == "resultsTable":
                OsteoAILogic.removeCalibrationFit(node)
                for ref in ("OsteoAI.summary", "OsteoAI.plot"):
                    other = node.GetNodeReference(ref)
                    if other is not None:
                        if ref == "OsteoAI.plot":
                            bands = other.GetNodeReference("OsteoAI.bands")
                            OsteoAILogic._removeChartSeries(other)
                            if bands is not None:
                                scene.RemoveNode(bands)
                        scene.RemoveNode(other)
            scene.RemoveNode(node)

    @staticmethod
    def _removeChartSeries(chart):
        # collect first: removing a series shrinks the chart's list
        series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
        for s in series:
            if s is not None:
                slicer.mrmlScene.RemoveNode(s)

    @staticmethod
    def removeCalibrationFit(resultsTable):
        """The calibration-fit table, chart and series made by Show calibration fit for these results."""
        if resultsTable is None:
            return
        chart = resultsTable.GetNodeReference(CALIBRATION_CHART_REF)
        if chart is not None:
            OsteoAILogic._removeChartSeries(chart)
            slicer.mrmlScene.RemoveNode(chart)
        table = resultsTable.GetNodeReference(CALIBRATION_TABLE_REF)
        if table is not None:
            slicer.mrmlScene.RemoveNode(table)

    def showResults(self, p):
        """Table and plot in the layout, segmentations visible, ROI boxes on."""
        lm = slicer.app.layoutManager()
        if lm is None:
            return
        lm.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        sel = slicer.app.applicationLogic().GetSelectionNode()
        if p.resultsTable:
            sel.SetActiveTableID(p.resultsTable.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()
            plot = p.resultsTable.GetNodeReference("OsteoAI.plot")
            if plot is not None:
                sel.SetActivePlotChartID(plot.GetID())
                slicer.app.applicationLogic().PropagatePlotChartSelection()
        slicer.util.setSliceViewerLayers(background=p.inputVolume, fit=True)

    def diagnosisText(self, p):
        import OsteoAILib.mrml as coremrml

        d = coremrml.results_from_text(p.resultsText).diagnosis
        if d.vbmd_mg_cm3 is None:
            return _("No diagnosis possible: {criteria}").format(criteria=d.criteria)
        return _("vBMD {vbmd} mg/cm3 ({levels}): {category}.").format(
            vbmd=f"{d.vbmd_mg_cm3:.0f}", levels=", ".join(d.levels), category=d.category
        )

    def diagnosisHtml(self, p):
        import OsteoAILib.mrml as coremrml

        r = coremrml.results_from_text(p.resultsText)
        d = r.diagnosis
        colour = {"normal": "#2a7d2a", "osteopenia": "#c77800", "osteoporosis": "#c62828"}.get(d.category or "", "#555")
        head = (f"<b style='font-size:14pt;color:{colour}'>{d.vbmd_mg_cm3:.0f} mg/cm&sup3; &mdash; {d.category}</b>"
                if d.vbmd_mg_cm3 is not None else "<b>" + _("No diagnosis possible") + "</b>")  # fmt: skip
        flags = "".join(f"<li>{q}</li>" for q in r.qc)
        return f"{head}<br>{d.criteria}" + (f"<ul>{flags}</ul>" if flags else "")

    def recompute(self, p):
        """Re-measure from the edited ROI segments / moved boxes; update table, plot, summary, results."""
        import OsteoAILib.mrml as coremrml

        results = coremrml.results_from_text(p.resultsText)
        return coremrml.recompute_from_segmentation(
            slicer.mrmlScene, p.inputVolume, p.roiSegmentation, results, vertebrae_seg_node=p.vertebraeSegmentation,
            table_node=p.resultsTable, text_node=p.resultsText, diagnostic_levels=p.diagnosticLevels or None,
        )  # fmt: skip

    @staticmethod
    def keyImagePng(keyImagesNode, index):
        """Path of the PNG of a key image (copied to Slicer's cache when the results loaded), or None."""
        import OsteoAILib.mrml as coremrml

        folder = keyImagesNode.GetAttribute("OsteoAI.keyImagesDir")
        items = coremrml.key_image_positions(keyImagesNode)
        if not folder or not (0 <= index < len(items)) or not items[index].get("name"):
            return None
        path = os.path.join(folder, items[index]["name"] + ".png")
        return path if os.path.isfile(path) else None

    @staticmethod
    def jumpToKeyImage(keyImagesNode, index):
        slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(keyImagesNode.GetID(), index, True)

    def showCorticalVsTrabecular(self, p):
        """Bone window, ROI outlines only, slice views centred on the first diagnostic level's ROI."""
        import OsteoAILib.mrml as coremrml

        results = coremrml.results_from_text(p.resultsText)
        level = (results.diagnosis.levels or [lv.level for lv in results.levels] or [None])[0]
        if level is None:
            return None
        c = coremrml.bone_contrast(slicer.mrmlScene, p.inputVolume, p.vertebraeSegmentation, p.roiSegmentation, level)
        display = p.inputVolume.GetScalarVolumeDisplayNode()
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevel(1500, 400)
        for seg in (p.vertebraeSegmentation, p.roiSegmentation):
            if seg is not None and seg.GetDisplayNode() is not None:
                seg.GetDisplayNode().SetVisibility2DFill(False)
                seg.GetDisplayNode().SetVisibility2DOutline(True)
        if c["roi_center_ras"]:
            slicer.modules.markups.logic().JumpSlicesToLocation(*c["roi_center_ras"], True)
        return c

    def showCalibrationFit(self, p):
        import OsteoAILib.mrml as coremrml

        results = coremrml.results_from_text(p.resultsText)
        self.removeCalibrationFit(p.resultsTable)  # pressed again: replaced, not duplicated
        table, chart = coremrml.add_calibration_fit(slicer.mrmlScene, results, p.inputVolume)
        if chart is None:
            return False
        if p.resultsTable is not None:  # removed with these results by the next Apply
            p.resultsTable.SetNodeReferenceID(CALIBRATION_TABLE_REF, table.GetID())
            p.resultsTable.SetNodeReferenceID(CALIBRATION_CHART_REF, chart.GetID())
        sel = slicer.app.applicationLogic().GetSelectionNode()
        sel.SetActivePlotChartID(chart.GetID())
        slicer.app.applicationLogic().PropagatePlotChartSelection()
        return True
