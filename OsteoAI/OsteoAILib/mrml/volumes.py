"""Volume nodes <-> core ``Volume``: image data, IJK-to-RAS geometry, parent transforms."""

from __future__ import annotations

import json

import numpy as np
import vtk
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.volume import Volume
from vtkmodules.util import numpy_support

from .constants import ATTR


def _matrix_to_numpy(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(a: np.ndarray) -> vtk.vtkMatrix4x4:
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def ijk_to_ras(node) -> np.ndarray:
    """IJK-to-RAS of a volume node, with a linear parent transform applied (what the user sees)."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    a = _matrix_to_numpy(m)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(f"volume {node.GetName()!r} is under a non-linear transform: harden it first")
        w = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(w)
        a = _matrix_to_numpy(w) @ a
    return a


def _image_to_array(image, copy: bool = True) -> np.ndarray:
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError("the volume node has no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError("expected a single-component (grey-level CT) volume")
    nx, ny, nz = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    arr = flat.reshape(nz, ny, nx)
    return arr.copy() if copy else arr


def _array_to_image(array: np.ndarray, image=None):
    array = np.ascontiguousarray(array)
    if array.ndim != 3:
        raise InputError(f"expected a 3D array, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = image if image is not None else vtk.vtkImageData()
    nz, ny, nx = array.shape
    image.SetDimensions(nx, ny, nz)
    vtk_array = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(vtk_array)
    return image


def volume_from_node(node, copy: bool = True) -> Volume:
    """Array ``[k, j, i]`` plus geometry of a scalar volume node (see ``volume.py``). ``copy=False``: the array
    is a view of the node's voxels, for a caller that only reads them while the node lives."""
    if node is None:
        raise InputError("no input volume selected")
    arr = _image_to_array(node.GetImageData(), copy)
    # The node's name often is the patient's or the series description: kept apart, written on request only.
    meta = {"source": "3D Slicer volume", "format": "mrml", "identifiers": {"node_name": node.GetName()}}
    tags = node.GetAttribute(ATTR + "tags")
    if tags:
        meta["tags"] = json.loads(tags)
    return Volume.from_ijk_to_ras(arr, ijk_to_ras(node), meta)


def add_volume_node(scene, vol: Volume, name: str, labelmap: bool = False, array: np.ndarray | None = None):
    """A scalar (or labelmap) volume node holding ``array`` (default ``vol.array``) on ``vol``'s grid."""
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    node.SetAndObserveImageData(_array_to_image(vol.array if array is None else array))
    node.SetIJKToRASMatrix(_numpy_to_matrix(vol.ijk_to_ras()))
    node.CreateDefaultDisplayNodes()
    if vol.meta.get("tags"):
        node.SetAttribute(ATTR + "tags", json.dumps(vol.meta["tags"], default=str))
    return node
