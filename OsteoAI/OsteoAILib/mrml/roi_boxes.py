"""Draggable ROI boxes (``vtkMRMLMarkupsROINode``): placement on the grid, whether the user moved
one, and the voxels inside it."""

from __future__ import annotations

import json

import numpy as np
from OsteoAIBaseLib import levels as lv

from ..terminology import level_color
from .constants import ATTR
from .scene import place_next_to
from .volumes import _matrix_to_numpy, _numpy_to_matrix


def add_roi_box(scene, ijk_to_ras_m: np.ndarray, kji_min, kji_max, label: int, roi_seg=None, ref_node=None):
    """A ``vtkMRMLMarkupsROINode`` covering voxels ``kji_min..kji_max`` (inclusive), axes along the grid."""
    level = lv.NAMES.get(int(label), str(label))
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", f"{level} ROI box")
    center, size, rot = _box_from_index(ijk_to_ras_m, np.asarray(kji_min), np.asarray(kji_max))
    obj = np.eye(4)
    obj[:3, :3] = rot
    obj[:3, 3] = center
    node.GetObjectToNodeMatrix().DeepCopy(_numpy_to_matrix(obj))
    node.SetSize(*size)
    node.SetLocked(False)
    node.CreateDefaultDisplayNodes()
    dn = node.GetDisplayNode()
    dn.SetSelectedColor(*level_color(label))
    dn.SetFillOpacity(0.0)  # outline only: the ROI segment underneath stays visible
    node.SetAttribute(ATTR + "level", level)
    node.SetAttribute(ATTR + "label", str(int(label)))
    node.SetAttribute(ATTR + "originalBox", json.dumps(_box_state(node)))
    if roi_seg is not None:
        node.SetNodeReferenceID(ATTR + "roiSegmentation", roi_seg.GetID())
    place_next_to(scene, node, ref_node)
    return node


def _box_from_index(m: np.ndarray, kji_min: np.ndarray, kji_max: np.ndarray):
    ijk_min = kji_min[::-1].astype(float) - 0.5  # voxel edges, not centres
    ijk_max = kji_max[::-1].astype(float) + 0.5
    lin = m[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    center = lin @ ((ijk_min + ijk_max) / 2) + m[:3, 3]
    size = (ijk_max - ijk_min) * spacing
    return center, size, lin / spacing


def _box_state(node) -> dict:
    return {"matrix": _matrix_to_numpy(node.GetObjectToNodeMatrix()).round(4).tolist(),
            "size": [round(float(x), 4) for x in node.GetSize()]}  # fmt: skip


def box_moved(node) -> bool:
    """True when the user dragged or resized the ROI box since OsteoAI placed it."""
    orig = node.GetAttribute(ATTR + "originalBox")
    if not orig:
        return False
    o, c = json.loads(orig), _box_state(node)
    return not (np.allclose(o["matrix"], c["matrix"], atol=1e-3) and np.allclose(o["size"], c["size"], atol=1e-3))


def box_block(node, vol_ijk_to_ras: np.ndarray, shape) -> tuple[slice, slice, slice] | None:
    """The block of a grid (k, j, i slices) around the ROI box's corners: every voxel inside the box lies in
    it. None when the box misses the grid."""
    lo, hi = _box_extent(node, vol_ijk_to_ras, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1], strict=True))


def _box_extent(node, vol_ijk_to_ras: np.ndarray, shape):
    """(lo, hi) grid indices (i, j, k) of the block around the box's corners."""
    obj_to_world = _matrix_to_numpy(node.GetObjectToWorldMatrix())
    half = np.asarray(node.GetSize()) / 2
    corners = np.array([[sx, sy, sz, 1.0] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * np.r_[half, 1]
    ijk = (np.linalg.inv(vol_ijk_to_ras) @ obj_to_world @ corners.T)[:3]
    lo = np.maximum(np.floor(ijk.min(1)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(ijk.max(1)).astype(int) + 2, np.asarray(shape)[::-1])
    return lo, hi


def box_mask(node, vol_ijk_to_ras: np.ndarray, shape, at=None) -> np.ndarray:
    """Voxels of a grid whose centres lie inside the ROI box (in world coordinates): the whole grid, or its block
    ``at`` ((k, j, i) slices; the same voxels, without a grid-sized array)."""
    world_to_obj = np.linalg.inv(_matrix_to_numpy(node.GetObjectToWorldMatrix()))
    half = np.asarray(node.GetSize()) / 2
    inside = np.zeros(shape if at is None else [s.stop - s.start for s in at], bool)
    # Only the grid block around the box's corners is tested: the whole grid of a 512x512 CT costs ~45 s.
    lo, hi = _box_extent(node, vol_ijk_to_ras, shape)
    if np.any(hi <= lo):
        return inside
    i, j, k = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    ijk1 = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    obj = (world_to_obj @ vol_ijk_to_ras @ ijk1)[:3]
    hit = np.all(np.abs(obj) <= half[:, None] + 1e-6, axis=0)
    kji = np.stack([k.ravel()[hit], j.ravel()[hit], i.ravel()[hit]])
    if at is not None:
        kji -= np.array([[s.start] for s in at])
        kji = kji[:, np.all((kji >= 0) & (kji < np.array(inside.shape)[:, None]), axis=0)]
    inside[tuple(kji)] = True
    return inside


def roi_boxes_of(scene, roi_seg_node) -> dict:
    """The ROI box nodes that point at ``roi_seg_node``: ``{level: node}``."""
    out = {}
    col = scene.GetNodesByClass("vtkMRMLMarkupsROINode")
    for n in range(col.GetNumberOfItems()):
        node = col.GetItemAsObject(n)
        ref = node.GetNodeReference(ATTR + "roiSegmentation")
        if ref is not None and ref.GetID() == roi_seg_node.GetID():
            out[node.GetAttribute(ATTR + "level")] = node
    return out
