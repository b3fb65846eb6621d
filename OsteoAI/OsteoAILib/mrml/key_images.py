"""Key images as a locked point list the panel jumps the slice views to."""

from __future__ import annotations

import json
import os

import numpy as np
import vtk
from OsteoAIBaseLib.atomic import json_default
from OsteoAIBaseLib.volume import LPS_TO_RAS

from .constants import ATTR
from .scene import place_next_to


def add_key_images(
    scene, key_images: list, ref_volume_node=None, name: str | None = None, png_dir: str | os.PathLike | None = None
):
    """Key images as a point list: one locked control point per image at the position it shows.

    The panel jumps the slice views to a point (``JumpSlicesToNthPointInMarkup``); the plane
    ("axial"/"sagittal") and the PNG are in the point description and the node attribute.
    ``key_images`` are ``keyimages.KeyImage`` objects or their ``describe()`` dicts.
    """
    items = [k.describe() if hasattr(k, "describe") else dict(k) for k in key_images]
    base = ref_volume_node.GetName() if ref_volume_node is not None else "CT"
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name or f"{base} key images")
    node.SetAttribute(ATTR + "kind", "keyimages")
    for it in items:
        lps = np.asarray(it.get("center_lps", (0, 0, 0)), float)
        ras = LPS_TO_RAS @ lps
        n = node.AddControlPoint(vtk.vtkVector3d(*ras), it.get("title") or it.get("name", ""))
        node.SetNthControlPointDescription(n, json.dumps({k: it.get(k) for k in ("name", "plane", "level", "file")}))
        node.SetNthControlPointLocked(n, True)
    node.SetAttribute(ATTR + "keyImages", json.dumps(items, default=json_default))
    if png_dir:
        node.SetAttribute(ATTR + "keyImagesDir", str(png_dir))
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetTextScale(2.0)
    place_next_to(scene, node, ref_volume_node)
    return node


def key_image_positions(node) -> list[dict]:
    """``[{"name", "plane", "level", "file", "ras"}...]`` for the panel's jump buttons."""
    out = []
    for n in range(node.GetNumberOfControlPoints()):
        d = json.loads(node.GetNthControlPointDescription(n) or "{}")
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(n, p)
        d["ras"] = p
        d["title"] = node.GetNthControlPointLabel(n)
        out.append(d)
    return out
