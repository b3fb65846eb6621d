"""What each module's parameter node holds, from the option registry (no Slicer import: the layout tests
read it). ``panel.parameterNodeClass`` turns these into the ``@parameterNodeWrapper`` classes when the
module loads; the combo boxes of the .ui files list the registry's choices through them."""

from ..mrml.parameters import NODE_PARAMETERS
from ..options import BY_NAME, parameter_fields

SEGMENT_NODES = {"inputVolume": "vtkMRMLScalarVolumeNode", "outputSegmentation": "vtkMRMLSegmentationNode"}


def osteoaiParameters():
    """(settings, nodes) of the OsteoAI parameter node; settings: name -> (type, choices, (min, max), default)."""
    return parameter_fields(), dict(NODE_PARAMETERS)


def segmentParameters():
    """(settings, nodes) of the OsteoAISegment parameter node."""
    settings = {
        name: (str, tuple(BY_NAME[name].choice_names), None, BY_NAME[name].default) for name in ("segmenter", "device")
    }
    settings.update(addBodies=(bool, None, None, True), show3D=(bool, None, None, True))
    return settings, dict(SEGMENT_NODES)
