"""Segmentation nodes: vertebrae and trabecular ROI segments with their terminology, and edited
segments back into a labelmap."""

from __future__ import annotations

import re

import numpy as np
import slicer
import vtk
from OsteoAIBaseLib import levels as lv
from OsteoAIBaseLib.errors import InputError
from vtkmodules.util import numpy_support

from ..remeasure import nonzero_block
from ..terminology import SNOMED_VERTEBRA, level_color
from .constants import (
    ANATOMIC_CONTEXT,
    ATTR,
    BINARY_LABELMAP,
    CATEGORY_ANATOMY,
    CATEGORY_TISSUE,
    TERMINOLOGY_CONTEXT,
    TYPE_CANCELLOUS_BONE,
)
from .roi_boxes import add_roi_box
from .scene import place_next_to
from .volumes import _array_to_image, _image_to_array, _matrix_to_numpy, _numpy_to_matrix, ijk_to_ras


def vertebra_terminology(level: str) -> str:
    code = SNOMED_VERTEBRA.get(level, "")
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT,
        CATEGORY_ANATOMY[1], CATEGORY_ANATOMY[0], CATEGORY_ANATOMY[2],
        code, "SCT" if code else "", f"{level} vertebra" if code else "",
        "", "", "",
        "", "", "", "", "", "", "",
    )  # fmt: skip


def roi_terminology(level: str) -> str:
    code = SNOMED_VERTEBRA.get(level, "")
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT,
        CATEGORY_TISSUE[1], CATEGORY_TISSUE[0], CATEGORY_TISSUE[2],
        TYPE_CANCELLOUS_BONE[1], TYPE_CANCELLOUS_BONE[0], TYPE_CANCELLOUS_BONE[2],
        "", "", "",
        ANATOMIC_CONTEXT, code, "SCT" if code else "", f"{level} vertebra" if code else "", "", "", "",
    )  # fmt: skip


def _check_grid(labelmap: np.ndarray, ref_node) -> np.ndarray:
    ref_shape = tuple(reversed(ref_node.GetImageData().GetDimensions()))
    if tuple(labelmap.shape) != ref_shape:
        raise InputError(f"labelmap shape {labelmap.shape} does not match volume {ref_node.GetName()!r} {ref_shape}")
    return ijk_to_ras(ref_node)


def _segment_id(label: int, roi: bool) -> str:
    return f"{lv.NAMES.get(int(label), str(label))}{'_roi' if roi else ''}"


def _add_segmentation(scene, labelmap: np.ndarray, ref_node, name: str, roi: bool):
    m = _check_grid(labelmap, ref_node)
    labels = sorted((int(x) for x in np.unique(labelmap) if x != 0), key=_craniocaudal)
    if labels and max(labels) > 255:
        raise InputError(f"label id {max(labels)} does not fit a segmentation layer")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(ref_node)
    seg.SetAttribute(ATTR + "kind", "rois" if roi else "vertebrae")
    # One shared layer holding every label, as Slicer stores them: small files, fast edits.
    shared = slicer.vtkOrientedImageData()
    _array_to_image(labelmap.astype(np.uint8), shared)
    shared.SetImageToWorldMatrix(_numpy_to_matrix(m))
    segmentation = seg.GetSegmentation()
    for lab in labels:
        level = lv.NAMES.get(lab, str(lab))
        s = slicer.vtkSegment()
        s.SetName(f"{level} trabecular ROI" if roi else f"{level} vertebra")
        s.SetColor(*level_color(lab))
        s.SetLabelValue(lab)
        s.SetTag("TerminologyEntry", roi_terminology(level) if roi else vertebra_terminology(level))
        s.SetTag(ATTR + "label", str(lab))
        s.AddRepresentation(BINARY_LABELMAP, shared)
        segmentation.AddSegment(s, _segment_id(lab, roi))
    if roi:
        # ROIs sit inside the vertebra: draw them filled and opaque so they read on top.
        seg.GetDisplayNode().SetOpacity2DFill(0.8)
    place_next_to(scene, seg, ref_node)
    return seg


def add_vertebrae_segmentation(
    scene, labelmap: np.ndarray, ref_volume_node, name: str | None = None, surface: bool = False
):
    """``vtkMRMLSegmentationNode`` "<volume> vertebrae": one segment per level ("T12 vertebra")."""
    seg = _add_segmentation(scene, labelmap, ref_volume_node, name or f"{ref_volume_node.GetName()} vertebrae", False)
    if surface:
        seg.CreateClosedSurfaceRepresentation()
    return seg


def add_roi_segmentation(scene, roi_labelmap: np.ndarray, ref_volume_node, name: str | None = None, boxes: bool = True):
    """``"<volume> trabecular ROIs"`` segmentation, and one draggable ROI box per level.

    Returns ``(segmentation_node, {level_name: vtkMRMLMarkupsROINode})``.
    """
    seg = _add_segmentation(
        scene, roi_labelmap, ref_volume_node, name or f"{ref_volume_node.GetName()} trabecular ROIs", True
    )
    roi_nodes = {}
    if boxes:
        m = ijk_to_ras(ref_volume_node)
        for lab in sorted((int(x) for x in np.unique(roi_labelmap) if x != 0), key=_craniocaudal):
            kji = np.argwhere(roi_labelmap == lab)
            node = add_roi_box(scene, m, kji.min(0), kji.max(0), lab, seg, ref_volume_node)
            roi_nodes[node.GetAttribute(ATTR + "level")] = node
    return seg, roi_nodes


def segmentation_to_labelmap(scene, seg_node, ref_volume_node) -> np.ndarray:
    """Labelmap (VerSe ids) on the reference volume's grid from a segmentation's segments.

    Segments carry their VerSe id in the ``OsteoAI.label`` tag; a segment the user added by hand
    gets one from its name ("L3 ..."), others are ignored.
    """
    sids, labels = _labelled_segments(seg_node)
    shape = tuple(reversed(ref_volume_node.GetImageData().GetDimensions()))
    if not labels:
        return np.zeros(shape, np.int16)
    direct = _from_shared_layer(seg_node, sids, labels, ref_volume_node)
    if direct is not None:
        return direct
    ids = vtk.vtkStringArray()
    for sid in sids:
        ids.InsertNextValue(sid)
    tmp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__osteoai_export__")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(seg_node, ids, tmp, ref_volume_node)
        if not ok:
            raise InputError(f"cannot export segmentation {seg_node.GetName()!r} to a labelmap")
        order = _image_to_array(tmp.GetImageData())  # 1..n in the order of `ids`
    finally:
        scene.RemoveNode(tmp)
    lut = np.zeros(len(labels) + 1, np.int16)
    lut[1:] = labels
    return lut[order]


def labelmap_block(scene, seg_node, ref_volume_node):
    """:func:`segmentation_to_labelmap` cut to a block of the grid that holds every labelled voxel:
    ``(block, labels)`` with ``block`` the (k, j, i) slices, or ``(None, None)`` when there is none. Read
    from the shared layer's own block (no grid-sized array) where :func:`_from_shared_layer` applies."""
    sids, labels = _labelled_segments(seg_node)
    layer = _shared_layer(seg_node, sids, ref_volume_node) if labels else None
    if layer is None:
        full = segmentation_to_labelmap(scene, seg_node, ref_volume_node)
        block = nonzero_block(full)
        return (block, full[block]) if block is not None else (None, None)
    voxels, at = layer
    inner = None if at is None else nonzero_block(voxels)
    if inner is None:
        return None, None
    lut = _label_lut(seg_node, sids, labels, voxels.dtype)
    block = tuple(slice(o.start + s.start, o.start + s.stop) for o, s in zip(at, inner, strict=True))
    return block, lut[voxels[inner]]


def segment_block(scene, seg_node, label: int, ref_volume_node, pad: int = 0):
    """The voxels of the segment carrying ``label``: ``(block, mask)``, the block around them grown by ``pad``
    voxels within the grid (as :func:`OsteoAILib.remeasure.nonzero_block`), or ``(None, None)``."""
    block, labels = labelmap_block(scene, seg_node, ref_volume_node)
    inner = None if block is None else nonzero_block(labels == int(label))
    if inner is None:
        return None, None
    shape = tuple(reversed(ref_volume_node.GetImageData().GetDimensions()))
    start = [o.start + s.start for o, s in zip(block, inner, strict=True)]
    stop = [o.start + s.stop for o, s in zip(block, inner, strict=True)]
    lo = [max(a - pad, 0) for a in start]
    hi = [min(b + pad, n) for b, n in zip(stop, shape, strict=True)]
    mask = np.zeros([b - a for a, b in zip(lo, hi, strict=True)], bool)
    mask[tuple(slice(a - low, b - low) for a, b, low in zip(start, stop, lo, strict=True))] = labels[inner] == label
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), mask


def _labelled_segments(seg_node) -> tuple[list[str], list[int]]:
    segmentation = seg_node.GetSegmentation()
    sids, labels = [], []
    for n in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(n)
        lab = _segment_label(segmentation.GetSegment(sid))
        if lab is not None:
            sids.append(sid)
            labels.append(lab)
    return sids, labels


def _from_shared_layer(seg_node, sids: list[str], labels: list[int], ref_volume_node) -> np.ndarray | None:
    """The segments' labelmap read straight from the one layer they share (see :func:`_shared_layer`); else
    None. The generic export resamples through a new labelmap node: seconds on a 512 x 512 CT for what is
    here a table lookup."""
    layer = _shared_layer(seg_node, sids, ref_volume_node)
    if layer is None:
        return None
    voxels, at = layer
    out = np.zeros(tuple(reversed(ref_volume_node.GetImageData().GetDimensions())), np.int16)
    if at is not None:
        lut = _label_lut(seg_node, sids, labels, voxels.dtype)
        block = out[at]
        for k in range(voxels.shape[0]):  # a slice at a time: the lookup's index copy stays small
            block[k] = lut[voxels[k]]
    return out


def _shared_layer(seg_node, sids: list[str], ref_volume_node):
    """The one layer the segments ``sids`` share, when it lies on the reference volume's grid (as OsteoAI
    writes it, or cut to its content as Slicer leaves it after an edit): ``(voxels, block)``, its voxels
    ``[k, j, i]`` as unsigned ints (a view) and the block of the grid they cover (None for an empty layer).
    None when only the generic export can read the segments."""
    if seg_node.GetParentTransformNode() is not None or ref_volume_node.GetParentTransformNode() is not None:
        return None
    segmentation = seg_node.GetSegmentation()
    layers = {segmentation.GetLayerIndex(sid) for sid in sids}
    if len(layers) != 1:
        return None
    img = segmentation.GetLayerDataObject(layers.pop())
    if img is None or img.GetNumberOfScalarComponents() != 1:
        return None
    x0, x1, y0, y1, z0, z1 = img.GetExtent()
    if x1 < x0 or y1 < y0 or z1 < z0:  # every segment erased
        return np.zeros((0, 0, 0), np.uint8), None
    nx, ny, nz = ref_volume_node.GetImageData().GetDimensions()
    if min(x0, y0, z0) < 0 or x1 >= nx or y1 >= ny or z1 >= nz or img.GetPointData().GetScalars() is None:
        return None
    m = vtk.vtkMatrix4x4()
    img.GetImageToWorldMatrix(m)
    if not np.allclose(_matrix_to_numpy(m), ijk_to_ras(ref_volume_node), atol=1e-4):
        return None
    flat = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars())
    if flat.dtype.kind not in "iu" or flat.dtype.itemsize > 2:
        return None
    voxels = flat.view(np.uint8 if flat.dtype.itemsize == 1 else np.uint16).reshape(z1 - z0 + 1, y1 - y0 + 1, -1)
    return voxels, (slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1))


def _label_lut(seg_node, sids: list[str], labels: list[int], dtype) -> np.ndarray:
    """Layer value -> VerSe id, for every value the layer's type can hold (0 for unlabelled segments)."""
    segmentation = seg_node.GetSegmentation()
    lut = np.zeros(1 << (8 * np.dtype(dtype).itemsize), np.int16)
    for sid, lab in zip(sids, labels, strict=True):
        value = segmentation.GetSegment(sid).GetLabelValue()
        if 0 < value < len(lut):
            lut[value] = lab
    return lut


def _segment_label(segment) -> int | None:
    tag = vtk.reference("")
    if segment.GetTag(ATTR + "label", tag) and str(tag).strip():
        return int(str(tag))
    m = re.match(r"\s*([CTL]\d{1,2})\b", segment.GetName() or "", re.I)
    if m and m.group(1).upper() in lv.IDS:
        return lv.IDS[m.group(1).upper()]
    return None


def set_segment_mask(seg_node, label: int, mask: np.ndarray, ref_volume_node, at=None) -> None:
    """Replace the labelmap of the segment carrying ``label`` by ``mask``: on the volume grid, or on its block
    ``at`` ((k, j, i) slices; the segment keeps no voxel outside it)."""
    segmentation = seg_node.GetSegmentation()
    for n in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(n)
        if _segment_label(segmentation.GetSegment(sid)) == int(label):
            # Only the block holding the mask is handed over: the replace clears the segment's voxels
            # outside it too, and a whole 512 x 512 CT grid costs Slicer ~0.5 s to merge.
            block = nonzero_block(mask) or (slice(0, 1),) * 3
            img = slicer.vtkOrientedImageData()
            _array_to_image(mask[block].astype(np.uint8), img)
            offset = (0, 0, 0) if at is None else tuple(s.start for s in at)
            z0, y0, x0 = (b.start + o for b, o in zip(block, offset, strict=True))
            nz, ny, nx = (s.stop - s.start for s in block)
            img.SetExtent(x0, x0 + nx - 1, y0, y0 + ny - 1, z0, z0 + nz - 1)
            img.SetImageToWorldMatrix(_numpy_to_matrix(ijk_to_ras(ref_volume_node)))
            slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                img, seg_node, sid, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
            )
            return


def _craniocaudal(lab: int) -> int:
    return lv.ORDER.index(lab) if lab in lv.ORDER else 100 + lab
