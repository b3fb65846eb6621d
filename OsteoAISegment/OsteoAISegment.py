"""OsteoAISegment: segment and label the thoracic and lumbar vertebrae of a CT (3D Slicer module).

This file declares the module and its self-test. The panel and the logic live in
``OsteoAILib.slicer_ui.segment_module``: Apply runs ``osteoai segment`` in a background ``PythonSlicer``
process (the GUI stays responsive, Cancel stops it) and adds the segmentation through
``OsteoAILib.mrml.spine_segmentation``.
"""

import slicer
from OsteoAILib.slicer_ui.segment_module import OsteoAISegmentLogic, OsteoAISegmentWidget  # noqa: F401
from OsteoAILib.slicer_ui.self_test import runOnPhantom
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest


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


class OsteoAISegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_phantom()

    def test_segment_phantom(self):
        """Whole flow on the digital phantom: background process, progress, nodes, labels."""
        fractions = []
        ran = runOnPhantom(self, OsteoAISegmentLogic(), lambda f, m: fractions.append(f), show3D=False)
        if ran is None:
            return
        ph, volumeNode, p = ran
        import numpy as np
        from OsteoAILib import mrml as coremrml

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
