"""MRML bridge of the segmentation stage: a :class:`SpineSegmentation` as segmentation nodes next to
the input volume, and an (edited) vertebra segmentation back to a labelmap.

Only file of OsteoAISegmentLib that imports ``slicer``; the scene is always an argument.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from OsteoAIBaseLib.atomic import json_default
from OsteoAIBaseLib.imageio import from_canonical, to_canonical

from OsteoAILib import mrml as core_mrml

ATTR = core_mrml.ATTR


def add_spine_segmentation(scene, seg, canonical, ref_volume_node, bodies: bool = True, surface: bool = True) -> dict:
    """Nodes for a :class:`~OsteoAISegmentLib.segmentation.SpineSegmentation` computed on ``canonical``.

    The labelmaps go back onto the input volume's grid (the stage works on the canonical grid).
    Returns ``{"vertebrae": node, "bodies": node | None}``.
    """
    original = core_mrml.volume_from_node(ref_volume_node)
    vert = _to_input_grid(seg.vertebrae, canonical, original)
    vnode = core_mrml.add_vertebrae_segmentation(scene, vert, ref_volume_node, surface=surface)
    _describe(vnode, seg)
    bnode = None
    if bodies and seg.bodies is not None and np.any(seg.bodies):
        body = _to_input_grid(seg.bodies, canonical, original)
        bnode = core_mrml.add_vertebrae_segmentation(
            scene, body, ref_volume_node, f"{ref_volume_node.GetName()} vertebral bodies"
        )
        bnode.SetAttribute(ATTR + "kind", "bodies")
        s = bnode.GetSegmentation()
        for n in range(s.GetNumberOfSegments()):
            segment = s.GetNthSegment(n)
            segment.SetName(segment.GetName().replace(" vertebra", " vertebral body"))
        _describe(bnode, seg)
        vnode.SetNodeReferenceID(ATTR + "bodies", bnode.GetID())
    return {"vertebrae": vnode, "bodies": bnode}


def _to_input_grid(labels: np.ndarray, canonical, original) -> np.ndarray:
    if labels.shape == original.shape and np.allclose(canonical.ijk_to_lps(), original.ijk_to_lps()):
        return labels.astype(np.int16)
    return from_canonical(labels.astype(np.int16), canonical, original)


def _describe(node, seg) -> None:
    node.SetAttribute(ATTR + "segmenter", seg.segmenter or "")
    node.SetAttribute(ATTR + "qc", json.dumps(list(seg.qc)))
    info = {k: v for k, v in (seg.info or {}).items() if k in ("rib_pairs", "partial_levels")}
    node.SetAttribute(ATTR + "info", json.dumps(info, default=json_default))


def qc_of(node) -> list[str]:
    return json.loads(node.GetAttribute(ATTR + "qc") or "[]")


def labelmap_from_segmentation(scene, seg_node, volume_node) -> np.ndarray:
    """VerSe-id labelmap on the volume grid from a vertebra segmentation, with the user's edits.

    Segments are identified by their OsteoAI tag or, for segments the user made, by a name that
    starts with the level ("L1 vertebra", "L1"), so a renamed segment relabels the vertebra.
    """
    return core_mrml.segmentation_to_labelmap(scene, seg_node, volume_node)


def segment_volume_node(
    scene,
    volume_node,
    method: str = "auto",
    device: str = "cpu",
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    segmenter: Callable | None = None,
    surface: bool = True,
) -> dict:
    """Segment a loaded volume in this process and add the result nodes.

    ``segmenter`` defaults to ``api.segment_spine``; the Slicer module runs the same call in a
    background process instead, so the GUI stays responsive.
    """
    if segmenter is None:
        from OsteoAISegmentLib.api import segment_spine as segmenter
    original = core_mrml.volume_from_node(volume_node)
    canonical = to_canonical(original)
    seg = segmenter(canonical, method=method, device=device, progress=progress, cancel=cancel)
    nodes = add_spine_segmentation(scene, seg, canonical, volume_node, surface=surface)
    nodes["segmentation"] = seg
    return nodes
