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
    segmentation = seg_node.GetSegmentation()
    ids, labels = vtk.vtkStringArray(), []
    for n in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(n)
        lab = _segment_label(segmentation.GetSegment(sid))
        if lab is not None:
            ids.InsertNextValue(sid)
            labels.append(lab)
    shape = tuple(reversed(ref_volume_node.GetImageData().GetDimensions()))
    if not labels:
        return np.zeros(shape, np.int16)
    sids = [ids.GetValue(n) for n in range(ids.GetNumberOfValues())]
    direct = _from_shared_layer(seg_node, sids, labels, ref_volume_node)
    if direct is not None:
        return direct
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


def _from_shared_layer(seg_node, sids: list[str], labels: list[int], ref_volume_node) -> np.ndarray | None:
    """The segments' labelmap read straight from the one layer they share, when that layer lies on
    the reference volume's grid (as OsteoAI writes it); else None. The generic export resamples
    through a new labelmap node: seconds on a 512 x 512 CT for what is here a table lookup."""
    if seg_node.GetParentTransformNode() is not None or ref_volume_node.GetParentTransformNode() is not None:
        return None
    segmentation = seg_node.GetSegmentation()
    layers = {segmentation.GetLayerIndex(sid) for sid in sids}
    if len(layers) != 1:
        return None
    img = segmentation.GetLayerDataObject(layers.pop())
    if img is None or img.GetPointData().GetScalars() is None or img.GetNumberOfScalarComponents() != 1:
        return None
    nx, ny, nz = ref_volume_node.GetImageData().GetDimensions()
    if tuple(img.GetExtent()) != (0, nx - 1, 0, ny - 1, 0, nz - 1):
        return None
    m = vtk.vtkMatrix4x4()
    img.GetImageToWorldMatrix(m)
    if not np.allclose(_matrix_to_numpy(m), ijk_to_ras(ref_volume_node), atol=1e-4):
        return None
    flat = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars())
    if flat.dtype.kind not in "iu" or flat.dtype.itemsize > 2:
        return None
    lut = np.zeros(1 << (8 * flat.dtype.itemsize), np.int16)  # every value the layer can hold
    for sid, lab in zip(sids, labels, strict=True):
        value = segmentation.GetSegment(sid).GetLabelValue()
        if 0 < value < len(lut):
            lut[value] = lab
    return lut[flat.view(np.uint8 if flat.dtype.itemsize == 1 else np.uint16)].reshape(nz, ny, nx)


def _segment_label(segment) -> int | None:
    tag = vtk.reference("")
    if segment.GetTag(ATTR + "label", tag) and str(tag).strip():
        return int(str(tag))
    m = re.match(r"\s*([CTL]\d{1,2})\b", segment.GetName() or "", re.I)
    if m and m.group(1).upper() in lv.IDS:
        return lv.IDS[m.group(1).upper()]
    return None


def set_segment_mask(seg_node, label: int, mask: np.ndarray, ref_volume_node) -> None:
    """Replace the labelmap of the segment carrying ``label`` by ``mask`` (on the volume grid)."""
    segmentation = seg_node.GetSegmentation()
    for n in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(n)
        if _segment_label(segmentation.GetSegment(sid)) == int(label):
            img = slicer.vtkOrientedImageData()
            _array_to_image(mask.astype(np.uint8), img)
            img.SetImageToWorldMatrix(_numpy_to_matrix(ijk_to_ras(ref_volume_node)))
            slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                img, seg_node, sid, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
            )
            return


def _craniocaudal(lab: int) -> int:
    return lv.ORDER.index(lab) if lab in lv.ORDER else 100 + lab
