"""The digital phantom as a Sample Data entry, built on this machine (nothing is downloaded).

``OsteoAI.py`` registers it (``registerSampleData``); this file builds it when the user asks for it.
"""

import json
import os

import slicer
from slicer.i18n import tr as _

PHANTOM_SAMPLE_NAME = "OsteoAIPhantom"
PHANTOM_SAMPLE_CATEGORY = "OsteoAI"
# A chest-abdomen CT of T11-L2 (plus the cut margin levels) with known vBMD per level, 120 kVp, 65-year-old woman.
PHANTOM_SAMPLE_PARAMS = {"seed": 0, "levels": "T11-L2", "matrix": 384, "spacing": (0.9, 0.9, 1.0)}


def phantomSampleUri():
    """A file of Slicer's cache that the loader writes first (Sample Data wants a URI; it is never fetched)."""
    cache = (
        slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()
        if slicer.mrmlScene.GetCacheManager()
        else slicer.app.cachePath
    )
    return "file://" + os.path.join(cache, PHANTOM_SAMPLE_NAME + ".nrrd").replace("\\", "/")


def loadPhantomSample(source=None):
    """Build the digital phantom (``PHANTOM_SAMPLE_PARAMS``) and add it to the scene as a CT volume node; the
    phantom's truth (vBMD per level) goes in the node's ``OsteoAI.phantomTruth`` attribute. Returns the node."""
    import OsteoAILib.mrml as coremrml
    from OsteoAILib.phantom import PhantomParams, make_phantom

    with slicer.util.tryWithErrorDisplay(_("Failed to build the OsteoAI phantom."), waitCursor=True):
        ph = make_phantom(PhantomParams(**PHANTOM_SAMPLE_PARAMS))
        node = coremrml.add_volume_node(slicer.mrmlScene, ph.volume, PHANTOM_SAMPLE_NAME)
        truth = {t["level"]: round(float(t["vbmd_mg_cm3"]), 1) for t in ph.truth["levels"] if "vbmd_mg_cm3" in t}
        node.SetAttribute("OsteoAI.phantomTruth", json.dumps(truth))
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node
