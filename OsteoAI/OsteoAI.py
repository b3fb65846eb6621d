"""OsteoAI: opportunistic osteoporosis screening from routine CT (3D Slicer module).

This file declares the module, its Sample Data entry and its self-test. The panel and the logic live in
``OsteoAILib.slicer_ui.osteoai_module``: Apply runs ``osteoai run`` in a background ``PythonSlicer`` process
(progress bar, Cancel), ``OsteoAILib.mrml`` turns its outputs into scene nodes, Recompute re-measures after
the user edits the ROI segments or drags a box, without segmenting again.
"""

import logging
import os

import slicer
from OsteoAILib.slicer_ui.osteoai_module import OsteoAILogic, OsteoAIWidget, teachingHtml  # noqa: F401
from OsteoAILib.slicer_ui.sample_data import (
    PHANTOM_SAMPLE_CATEGORY,
    PHANTOM_SAMPLE_NAME,
    PHANTOM_SAMPLE_PARAMS,  # noqa: F401
    loadPhantomSample,
    phantomSampleUri,
)
from OsteoAILib.slicer_ui.self_test import runOnPhantom
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

TERMINOLOGY_FILE = "SegmentationCategoryTypeModifier-OsteoAI.term.json"


class OsteoAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("OsteoAI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["OsteoAISegment"]
        self.parent.contributors = ["OsteoAI contributors"]
        self.parent.helpText = _("""
Opportunistic osteoporosis screening from a routine chest or abdomen CT, without a phantom:
segments and labels the vertebrae, places a trabecular ROI in each vertebral body, calibrates HU
with the patient's own tissues, and reports volumetric BMD (mg/cm&sup3;) per level with the ACR
category, QC flags and key images. Edit the ROI segments or drag an ROI box, then press Recompute.
Research software, not a medical device.
See the <a href="https://github.com/osteoai/osteoai">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
OsteoAI is open source. It builds on 3D Slicer, MONAI, PyTorch and SimpleITK; thresholds follow the
ACR-SPR-SSR practice parameter for QCT and Pickhardt et al. (Ann Intern Med 2013). Terminology codes
are SNOMED CT, as in 3D Slicer's terminology files.
""")
        slicer.app.connect("startupCompleted()", self.registerTerminology)
        slicer.app.connect("startupCompleted()", registerSampleData)

    def registerTerminology(self):
        """Make the OsteoAI terminology (vertebrae, cancellous bone) selectable in Segment Editor."""
        path = os.path.join(os.path.dirname(self.parent.path), "Resources", TERMINOLOGY_FILE)
        try:
            slicer.modules.terminologies.logic().LoadTerminologyFromFile(path)
        except AttributeError:  # Terminologies module disabled
            logging.warning("OsteoAI: terminology not registered (Terminologies module not loaded)")


def registerSampleData():
    """List the digital phantom in the Sample Data module (category OsteoAI); its loader builds it locally."""
    try:
        import SampleData
    except ImportError:  # Sample Data module disabled
        logging.warning("OsteoAI: the phantom is not listed in Sample Data (SampleData module not loaded)")
        return
    iconsPath = os.path.join(os.path.dirname(__file__), "Resources", "Icons")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=PHANTOM_SAMPLE_CATEGORY,
        sampleName=PHANTOM_SAMPLE_NAME,
        uris=phantomSampleUri(),
        fileNames=PHANTOM_SAMPLE_NAME + ".nrrd",
        nodeNames=PHANTOM_SAMPLE_NAME,
        thumbnailFileName=os.path.join(iconsPath, "OsteoAI.png"),
        loadFileType="VolumeFile",
        customDownloader=loadPhantomSample,
    )


class OsteoAITest(ScriptedLoadableModuleTest):
    """Whole flow on the digital phantom: background run, nodes, recompute after an edit."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_parameter_node_matches_bridge()
        self.setUp()
        self.test_phantom_flow()

    def test_parameter_node_matches_bridge(self):
        from OsteoAILib import mrml as coremrml

        p = OsteoAILogic().getParameterNode()
        p.kvp = 100.0
        p.radiomics = True
        p.levels = "T12-L2"
        settings, _nodes = coremrml.read_parameter_node(slicer.mrmlScene)
        self.assertEqual(settings.kvp, 100.0)
        self.assertTrue(settings.radiomics)
        self.assertEqual(settings.levels, "T12-L2")

    def test_phantom_flow(self):
        logic = OsteoAILogic()
        ran = runOnPhantom(self, logic)
        if ran is None:
            return
        ph, volumeNode, p = ran
        import numpy as np
        from OsteoAILib import mrml as coremrml

        rows = coremrml.table_to_rows(p.resultsTable)
        # Against the phantom's own truth: it adds cut margin levels around the requested ones (T11 and L3
        # here), which get a row without a measurement; the requested levels are measured within 15 mg/cm3.
        truth = {t["level"]: t["vbmd_mg_cm3"] for t in ph.truth["levels"]}
        self.assertEqual([r["Level"] for r in rows], list(truth))
        byLevel = {r["Level"]: r for r in rows}
        for name in ph.truth["requested_levels"]:
            self.assertLess(abs(byLevel[name]["vBMD"] - truth[name]), 15.0, byLevel[name])
        # Erase half of the L1 ROI and recompute: the ROI volume halves, nothing is segmented again.
        before = {r["Level"]: r["ROI volume"] for r in rows}
        rois = coremrml.segmentation_to_labelmap(slicer.mrmlScene, p.roiSegmentation, volumeNode)
        l1 = rois == 20
        ks = np.argwhere(l1)[:, 0]
        l1[: (ks.min() + ks.max()) // 2 + 1] = False
        coremrml.set_segment_mask(p.roiSegmentation, 20, l1, volumeNode)
        logic.recompute(p)
        after = {r["Level"]: r["ROI volume"] for r in coremrml.table_to_rows(p.resultsTable)}
        self.assertLess(after["L1"], 0.8 * before["L1"])
        self.assertEqual(after["T12"], before["T12"])
        self.delayDisplay("OsteoAI phantom test passed")
