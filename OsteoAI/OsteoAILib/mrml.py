"""MRML bridge: OsteoAI results as 3D Slicer scene nodes, and edited nodes back into the core.

The only core-side file that imports ``slicer``. Every function takes the scene (or a node) as an
argument, so the same code runs inside Slicer (``slicer.mrmlScene``) and headless under
``slicer-core`` (:func:`new_scene`, used by ``osteoai run --scene`` and the tests). Nothing here
touches ``slicer.app``, ``slicer.mrmlScene`` or qt.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtkmodules.util import numpy_support

from . import levels as lv
from .errors import InputError
from .results import (
    ACR_NORMAL_ABOVE,
    ACR_OSTEOPOROSIS_BELOW,
    Results,
    acr_category,
)
from .terminology import SNOMED_VERTEBRA, level_color
from .volume import LPS_TO_RAS, Volume

MODULE_NAME = "OsteoAI"
ATTR = "OsteoAI."  # prefix of every node attribute / segment tag this bridge writes
TERMINOLOGY_CONTEXT = "Segmentation category and type - OsteoAI"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY_ANATOMY = ("SCT", "123037004", "Anatomical Structure")
CATEGORY_TISSUE = ("SCT", "85756007", "Tissue")
TYPE_CANCELLOUS_BONE = ("SCT", "4421005", "Cancellous bone")
BINARY_LABELMAP = "Binary labelmap"


# --------------------------------------------------------------------------------------------
# A headless scene that behaves like Slicer's for what the bridge needs
# --------------------------------------------------------------------------------------------


class HeadlessScene:
    """A ``vtkMRMLScene`` with the logics that Slicer would register on it.

    The logics must outlive every use of the scene: they register storage node classes, the
    segmentation converter rules (closed surface) and the subject hierarchy. Dropping the
    application logic while the scene is alive makes slicer-core segfault, so keep this object.
    """

    def __init__(self):
        from vtkmodules.vtkCommonCore import vtkCollection

        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtkCollection())
        self.app_logic.SetViewLogics(vtkCollection())
        self.logics = {}
        for key, cls in (
            ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
            ("Markups", slicer.vtkSlicerMarkupsLogic),
            ("Tables", slicer.vtkSlicerTablesLogic),
            ("Texts", slicer.vtkSlicerTextsLogic),
            ("Plots", slicer.vtkSlicerPlotsLogic),
        ):
            logic = cls()
            logic.SetMRMLScene(self.scene)
            logic.SetMRMLApplicationLogic(self.app_logic)
            self.app_logic.SetModuleLogic(key, logic)
            self.logics[key] = logic
        slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(self.scene)
        self.sh_logic = slicer.vtkSlicerSubjectHierarchyModuleLogic()
        self.sh_logic.SetMRMLScene(self.scene)
        self.sh_logic.SetMRMLApplicationLogic(self.app_logic)

    def close(self):
        self.scene.Clear(1)


def new_scene() -> HeadlessScene:
    return HeadlessScene()


# --------------------------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------------------------


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


def _image_to_array(image) -> np.ndarray:
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError("the volume node has no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError("expected a single-component (grey-level CT) volume")
    nx, ny, nz = image.GetDimensions()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return flat.reshape(nz, ny, nx).copy()


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


def volume_from_node(node) -> Volume:
    """Array ``[k, j, i]`` plus geometry of a scalar volume node (see ``volume.py``)."""
    if node is None:
        raise InputError("no input volume selected")
    arr = _image_to_array(node.GetImageData())
    meta = {"source": node.GetName(), "format": "mrml"}
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


# --------------------------------------------------------------------------------------------
# Subject hierarchy and terminology
# --------------------------------------------------------------------------------------------


def _sh_item(scene, node) -> int:
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(sh.GetSceneItemID(), node)
    return item


def place_next_to(scene, node, ref_node) -> None:
    """Put ``node`` in the same subject hierarchy folder/study as ``ref_node``."""
    if ref_node is None:
        return
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemParent(_sh_item(scene, ref_node))
    sh.SetItemParent(_sh_item(scene, node), parent)


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


# --------------------------------------------------------------------------------------------
# Segmentations
# --------------------------------------------------------------------------------------------


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


def box_mask(node, vol_ijk_to_ras: np.ndarray, shape) -> np.ndarray:
    """Voxels of a grid whose centres lie inside the ROI box (in world coordinates)."""
    obj_to_world = _matrix_to_numpy(node.GetObjectToWorldMatrix())
    world_to_obj = np.linalg.inv(obj_to_world)
    half = np.asarray(node.GetSize()) / 2
    k, j, i = np.indices(shape)
    ijk1 = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    obj = (world_to_obj @ vol_ijk_to_ras @ ijk1)[:3]
    inside = np.all(np.abs(obj) <= half[:, None] + 1e-6, axis=0)
    return inside.reshape(shape)


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


# --------------------------------------------------------------------------------------------
# Results: table, summary, plot, results JSON, key images
# --------------------------------------------------------------------------------------------


def _r(x, nd: int):
    # Tables are stored as TSV with 6 significant digits: round to what is meaningful (0.01 HU,
    # 0.01 mg/cm3, 1 mm3) so a saved scene reloads with exactly the values shown. Full precision
    # stays in the results text node.
    return None if x is None else round(float(x), nd)


# (column, unit, description, getter)
COLUMNS: list[tuple[str, str, str, Callable]] = [
    ("Level", "", "Vertebral level (VerSe naming)", lambda r: r.level),
    ("ROI volume", "mm3", "Volume of the trabecular ROI", lambda r: _r(r.roi_volume_mm3, 0)),
    ("Mean", "HU", "Mean CT number in the trabecular ROI", lambda r: _r(r.roi_mean_hu, 2)),
    ("Median", "HU", "Median CT number in the trabecular ROI", lambda r: _r(r.roi_median_hu, 2)),
    ("SD", "HU", "Standard deviation of the CT number in the ROI", lambda r: _r(r.roi_sd_hu, 2)),
    ("vBMD", "mg/cm3", "Volumetric BMD, calcium hydroxyapatite equivalent", lambda r: _r(r.vbmd_mg_cm3, 2)),
    ("vBMD CI low", "mg/cm3", "Lower bound of the 95% interval", lambda r: _r((r.vbmd_ci95 or (None, None))[0], 2)),
    ("vBMD CI high", "mg/cm3", "Upper bound of the 95% interval", lambda r: _r((r.vbmd_ci95 or (None, None))[1], 2)),
    ("Category", "", "ACR category of this level alone (>120 normal, 80-120 osteopenia, <80 osteoporosis)",
     lambda r: acr_category(r.vbmd_mg_cm3) if r.vbmd_mg_cm3 is not None else ""),
    ("Method", "", "How vBMD was obtained", lambda r: r.vbmd_method),
    ("QC", "", "Quality-control flags (code: explanation)", lambda r: "; ".join(r.qc)),
    ("Used for diagnosis", "", "1 when this level enters the mean used for the diagnosis",
     lambda r: 1 if r.used_for_diagnosis else 0),
]  # fmt: skip
STRING_COLUMNS = {"Level", "Category", "Method", "QC"}
INT_COLUMNS = {"Used for diagnosis"}


def _table_rows(results: Results) -> list[list]:
    return [[get(r) for _, _, _, get in COLUMNS] for r in results.levels]


def _fill_table(table_node, header: list[tuple[str, str, str]], rows: list[list], string_cols, int_cols):
    table = table_node.GetTable()
    for c in range(table.GetNumberOfColumns()):
        table_node.RemoveAllColumnProperties(table.GetColumnName(c))
    table.Initialize()
    for c, (col, _unit, _desc) in enumerate(header):
        if col in string_cols:
            arr = vtk.vtkStringArray()
        elif col in int_cols:
            arr = vtk.vtkIntArray()
        else:
            arr = vtk.vtkDoubleArray()
        arr.SetName(col)
        for row in rows:
            v = row[c]
            if col in string_cols:
                arr.InsertNextValue("" if v is None else str(v))
            else:
                arr.InsertNextValue(float("nan") if v is None else v)
        table.AddColumn(arr)
    for col, unit, desc in header:
        if unit:
            table_node.SetColumnUnitLabel(col, unit)
        table_node.SetColumnDescription(col, desc)
        if col not in string_cols:
            table_node.SetColumnType(col, vtk.VTK_INT if col in int_cols else vtk.VTK_DOUBLE)
    table_node.Modified()


def summary_rows(results: Results) -> list[tuple[str, str]]:
    d, c = results.diagnosis, results.calibration

    def num(x, fmt="{:.1f}"):
        return "" if x is None else fmt.format(x)

    pick = f"{num(d.pickhardt_l1_hu)} HU: {d.pickhardt_triage}" if d.pickhardt_l1_hu is not None else ""
    ci = "" if not d.vbmd_ci95 else f"{d.vbmd_ci95[0]:.1f} - {d.vbmd_ci95[1]:.1f} mg/cm3"
    cal = f"{c.method}: HU_true = {c.slope:.4f} x HU + {c.intercept:.2f}"
    if c.residual_hu is not None:
        cal += f", residual {c.residual_hu:.1f} HU"
    vbmd = f"{num(d.vbmd_mg_cm3)} mg/cm3" if d.vbmd_mg_cm3 is not None else "not possible"
    rows = [
        ("vBMD (mean of diagnostic levels)", vbmd),
        ("Category (ACR)", d.category or "not possible"),
        ("Diagnostic levels", ", ".join(d.levels)),
        ("Criteria", d.criteria),
        ("vBMD 95% interval", ci),
        ("L1 trabecular HU (Pickhardt triage)", pick),
        ("Calibration", cal),
        ("kVp", f"{c.kvp:g} ({c.kvp_source})"),
        ("Scan QC", "; ".join(results.qc)),
        ("Software", ", ".join(f"{k} {v}" for k, v in results.software.items())),
    ]  # fmt: skip
    return rows


def add_results_table(scene, results: Results, name: str | None = None, ref_volume_node=None, table_node=None):
    """``vtkMRMLTableNode`` "<volume> BMD" (a row per level), a summary table and a plot chart.

    Returns ``(table, summary_table, plot_chart)``. Pass ``table_node`` (a table made earlier) to
    update the nodes in place after a recompute.
    """
    base = name or f"{ref_volume_node.GetName() if ref_volume_node is not None else 'CT'} BMD"
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", base)
        table_node.SetAttribute(ATTR + "kind", "levels")
        table_node.SetUseColumnTitleAsColumnHeader(True)
        place_next_to(scene, table_node, ref_volume_node)
    _fill_table(table_node, [c[:3] for c in COLUMNS], _table_rows(results), STRING_COLUMNS, INT_COLUMNS)
    d = results.diagnosis
    table_node.SetAttribute(ATTR + "vbmd", "" if d.vbmd_mg_cm3 is None else repr(float(d.vbmd_mg_cm3)))
    table_node.SetAttribute(ATTR + "category", d.category or "")

    summary = table_node.GetNodeReference(ATTR + "summary")
    if summary is None:
        summary = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{base} summary")
        summary.SetAttribute(ATTR + "kind", "summary")
        table_node.SetNodeReferenceID(ATTR + "summary", summary.GetID())
        place_next_to(scene, summary, ref_volume_node)
    _fill_table(summary, [("Item", "", "Summary item"), ("Value", "", "Value")],
                [list(r) for r in summary_rows(results)], {"Item", "Value"}, set())  # fmt: skip

    chart = table_node.GetNodeReference(ATTR + "plot")
    if chart is None:
        chart = _add_plot(scene, table_node, base, ref_volume_node)
        table_node.SetNodeReferenceID(ATTR + "plot", chart.GetID())
    _update_bands(chart, len(results.levels))
    return table_node, summary, chart


def _add_plot(scene, table_node, base: str, ref_volume_node):
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{base} chart")
    chart.SetTitle("vBMD per level")
    chart.SetXAxisTitle("vertebral level (cranial to caudal)")
    chart.SetYAxisTitle("vBMD (mg/cm3)")
    chart.SetAttribute(ATTR + "kind", "plot")
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{base} vBMD")
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("Index")
    series.SetYColumnName("vBMD")
    series.SetLabelColumnName("Level")
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
    series.SetColor(0.1, 0.3, 0.8)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    bands = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{base} ACR bands")
    bands.SetAttribute(ATTR + "kind", "bands")
    chart.SetNodeReferenceID(ATTR + "bands", bands.GetID())
    for col, value, color in (("osteoporosis below", ACR_OSTEOPOROSIS_BELOW, (0.85, 0.1, 0.1)),
                              ("normal above", ACR_NORMAL_ABOVE, (0.1, 0.6, 0.1))):  # fmt: skip
        s = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"ACR {col} {value:g} mg/cm3")
        s.SetAndObserveTableNodeID(bands.GetID())
        s.SetXColumnName("Index")
        s.SetYColumnName(col)
        s.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeLine)
        s.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash)
        s.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        s.SetColor(*color)
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
    for node in (chart, bands):
        place_next_to(scene, node, ref_volume_node)
    return chart


def _update_bands(chart, n_levels: int):
    # The level table gets the x index here too: _fill_table rebuilt its columns.
    series = chart.GetNthPlotSeriesNode(0)
    table_node = series.GetTableNode() if series is not None else None
    if table_node is not None and table_node.GetTable().GetColumnByName("Index") is None:
        idx = vtk.vtkDoubleArray()
        idx.SetName("Index")
        for i in range(table_node.GetTable().GetNumberOfRows()):
            idx.InsertNextValue(i + 1)
        table_node.GetTable().AddColumn(idx)
        table_node.SetColumnDescription("Index", "Position along the spine (plot x axis)")
    elif table_node is not None:
        col = table_node.GetTable().GetColumnByName("Index")
        for i in range(table_node.GetTable().GetNumberOfRows()):
            col.SetValue(i, i + 1)
    bands = chart.GetNodeReference(ATTR + "bands")
    x = [0.5, max(n_levels, 1) + 0.5]
    cols = {"Index": x, "osteoporosis below": [ACR_OSTEOPOROSIS_BELOW] * 2, "normal above": [ACR_NORMAL_ABOVE] * 2}
    t = bands.GetTable()
    t.Initialize()
    for k, vals in cols.items():
        a = vtk.vtkDoubleArray()
        a.SetName(k)
        for v in vals:
            a.InsertNextValue(v)
        t.AddColumn(a)
    bands.Modified()
    if table_node is not None:
        table_node.Modified()


def add_results_text(scene, results: Results, name: str, ref_volume_node=None, text_node=None):
    """The full ``results.json`` as a text node: the scene carries the calibration for recompute."""
    if text_node is None:
        text_node = scene.AddNewNodeByClass("vtkMRMLTextNode", name)
        text_node.SetAttribute(ATTR + "kind", "results")
        place_next_to(scene, text_node, ref_volume_node)
    text_node.SetText(json.dumps(results.to_dict(), indent=1, default=_json_default))
    return text_node


def results_from_text(text_node) -> Results:
    return Results.from_dict(json.loads(text_node.GetText()))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


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
    node.SetAttribute(ATTR + "keyImages", json.dumps(items, default=_json_default))
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


# --------------------------------------------------------------------------------------------
# Parameter node (parameterNodeWrapper encoding)
# --------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """Every setting of the OsteoAI panel; the module's ``@parameterNodeWrapper`` class mirrors
    these names and types so a saved scene reopens with the same settings."""

    segmenter: str = "auto"
    device: str = "cpu"
    levels: str = ""  # "" = every level found
    calibration: str = "auto"
    kvp: float = 0.0  # 0 = from the DICOM tags
    phantomPairs: str = ""  # "HU:mg, HU:mg" rod pairs for phantom calibration
    diagnosticLevels: str = ""
    vbmdMethod: str = "auto"
    nKeyImages: int = 4
    radiomics: bool = False


# node-valued parameters of the wrapper: name -> MRML class
NODE_PARAMETERS = {
    "inputVolume": "vtkMRMLScalarVolumeNode",
    "vertebraeSegmentation": "vtkMRMLSegmentationNode",
    "roiSegmentation": "vtkMRMLSegmentationNode",
    "resultsTable": "vtkMRMLTableNode",
    "resultsText": "vtkMRMLTextNode",
    "keyImages": "vtkMRMLMarkupsFiducialNode",
}


def _encode(value) -> str:
    if isinstance(value, bool):  # parameterNodeWrapper BoolSerializer
        return "True" if value else "False"
    return str(value)  # NumberSerializer / StringSerializer


def _decode(text: str, typ):
    if typ in (bool, "bool"):
        return text == "True"
    if typ in (int, "int"):
        return int(text)
    if typ in (float, "float"):
        return float(text)
    return text


def get_parameter_node(scene, module_name: str = MODULE_NAME, create: bool = True):
    """The module's singleton ``vtkMRMLScriptedModuleNode``, found or made as ScriptedLoadableModuleLogic does."""
    node = scene.GetSingletonNode(module_name, "vtkMRMLScriptedModuleNode")
    if node is None and create:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(module_name)
        node.SetName(scene.GenerateUniqueName(module_name))
        node.SetAttribute("ModuleName", module_name)
        node = scene.AddNode(node)
    return node


def write_parameter_node(scene, settings: Settings, nodes: dict | None = None, module_name: str = MODULE_NAME):
    node = get_parameter_node(scene, module_name)
    for f in fields(Settings):
        node.SetParameter(f.name, _encode(getattr(settings, f.name)))
    for key, value in (nodes or {}).items():
        if key not in NODE_PARAMETERS:
            raise ValueError(f"unknown node parameter {key!r}")
        node.SetParameter(key, "")  # NodeSerializer writes both
        node.SetNodeReferenceID(key, value.GetID() if value is not None else None)
    return node


def read_parameter_node(scene, module_name: str = MODULE_NAME) -> tuple[Settings, dict]:
    node = get_parameter_node(scene, module_name, create=False)
    s = Settings()
    if node is None:
        return s, {}
    types = {f.name: f.type for f in fields(Settings)}
    for name, typ in types.items():
        if name in _names(node):
            setattr(s, name, _decode(node.GetParameter(name), typ))
    nodes = {k: node.GetNodeReference(k) for k in NODE_PARAMETERS if node.GetNodeReference(k) is not None}
    return s, nodes


def _names(node) -> set:
    return set(node.GetParameterNames())


def settings_from_options(options) -> Settings:
    pairs = ", ".join(f"{h:g}:{m:g}" for h, m in (options.phantom_pairs or []))
    return Settings(
        segmenter=options.segmenter, device=options.device, levels=options.levels or "",
        calibration=options.calibration, kvp=float(options.kvp or 0.0), phantomPairs=pairs,
        diagnosticLevels=options.diagnostic_levels or "", vbmdMethod=options.vbmd_method,
        nKeyImages=int(options.n_key_images), radiomics=bool(options.radiomics),
    )  # fmt: skip


def options_from_settings(s: Settings):
    from .pipeline import PipelineOptions

    pairs = []
    for part in s.phantomPairs.split(","):
        if part.strip():
            try:
                h, m = part.split(":")
                pairs.append((float(h), float(m)))
            except ValueError:
                raise InputError(f"phantom pair {part.strip()!r} is not 'HU:mg/cm3'") from None
    return PipelineOptions(
        levels=s.levels or None, calibration=s.calibration, phantom_pairs=pairs or None,
        segmenter=s.segmenter, device=s.device, kvp=s.kvp or None,
        diagnostic_levels=s.diagnosticLevels or None, vbmd_method=s.vbmdMethod,
        n_key_images=s.nKeyImages, radiomics=s.radiomics,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Whole results <-> scene
# --------------------------------------------------------------------------------------------


@dataclass
class ResultNodes:
    volume: object
    vertebrae: object | None
    rois: object | None
    roi_boxes: dict
    table: object | None
    summary: object | None
    plot: object | None
    text: object | None
    key_images: object | None
    parameters: object | None = None


def add_pipeline_output(scene, output, volume_node=None, name: str | None = None, settings: Settings | None = None,
                        surface: bool = False, png_dir=None) -> ResultNodes:  # fmt: skip
    """Every result of a screening as nodes; ``volume_node`` is the input when it is already loaded."""
    if volume_node is None:
        name = name or _volume_name(output)
        volume_node = add_volume_node(scene, output.volume, name)
    vert = add_vertebrae_segmentation(scene, output.vertebrae, volume_node, surface=surface)
    rois, boxes = add_roi_segmentation(scene, output.rois, volume_node)
    table, summary, plot = add_results_table(scene, output.results, ref_volume_node=volume_node)
    text = add_results_text(scene, output.results, f"{volume_node.GetName()} results", volume_node)
    keys = output.key_images or output.results.key_images
    kin = add_key_images(scene, keys, volume_node, png_dir=png_dir) if keys else None
    for node in (table, vert, rois, text, kin):
        if node is not None:
            node.SetNodeReferenceID(ATTR + "volume", volume_node.GetID())
    nodes = {"inputVolume": volume_node, "vertebraeSegmentation": vert, "roiSegmentation": rois,
             "resultsTable": table, "resultsText": text, "keyImages": kin}  # fmt: skip
    pnode = write_parameter_node(scene, settings or Settings(), nodes)
    return ResultNodes(volume_node, vert, rois, boxes, table, summary, plot, text, kin, pnode)


def _volume_name(output) -> str:
    src = output.results.input.get("name") or output.results.input.get("source") or output.volume.meta.get("source")
    if not src:
        return "CT"
    stem = Path(str(src)).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or "CT"


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


def recompute_from_segmentation(
    scene,
    volume_node,
    roi_seg_node,
    results: Results,
    roi_boxes: dict | None = None,
    vertebrae_seg_node=None,
    table_node=None,
    text_node=None,
    diagnostic_levels: str | None = None,
    measure: Callable | None = None,
    diagnose: Callable | None = None,
) -> Results:
    """Re-measure every level from the (edited) ROI segments and moved ROI boxes; update the nodes.

    A moved/resized box replaces its level's ROI by the voxels inside the box that belong to that
    vertebra (whole box when no vertebra segmentation is given); the segment is updated to match so
    what the user sees is what is measured. Calibration is kept: no segmentation runs again.
    ``measure``/``diagnose`` default to ``bmd.measure_levels`` / ``bmd.diagnose``.
    """
    if measure is None or diagnose is None:
        from . import bmd

        measure = measure or bmd.measure_levels
        diagnose = diagnose or bmd.diagnose
    vol = volume_from_node(volume_node)
    rois = segmentation_to_labelmap(scene, roi_seg_node, volume_node)
    boxes = roi_boxes if roi_boxes is not None else roi_boxes_of(scene, roi_seg_node)
    moved = []
    vert = None
    for level, box in boxes.items():
        if not box_moved(box):
            continue
        if vert is None and vertebrae_seg_node is not None:
            vert = segmentation_to_labelmap(scene, vertebrae_seg_node, volume_node)
        lab = int(box.GetAttribute(ATTR + "label") or lv.IDS[level])
        inside = box_mask(box, ijk_to_ras(volume_node), vol.shape)
        if vert is not None:
            inside &= vert == lab
        rois[rois == lab] = 0
        rois[inside & (rois == 0)] = lab
        set_segment_mask(roi_seg_node, lab, rois == lab, volume_node)
        box.SetAttribute(ATTR + "originalBox", json.dumps(_box_state(box)))
        moved.append(level)

    old = {r.label: r for r in results.levels}
    measured_codes = {"no_roi", "implausible"}  # flags measure_levels sets itself
    level_qc = {lab: [f for f in r.qc if f.split(":")[0] not in measured_codes] for lab, r in old.items()}
    extra = {lab: dict(r.extra) for lab, r in old.items()}
    labels = sorted(set(int(x) for x in np.unique(rois) if x != 0) | set(old), key=_craniocaudal)
    new_levels = measure(vol, rois, results.calibration, labels=labels, level_qc=level_qc, extra=extra)
    diagnosis = diagnose(new_levels, diagnostic_levels)
    results.levels = new_levels
    results.diagnosis = diagnosis
    note = "edited: ROIs edited in 3D Slicer, vBMD recomputed"
    if moved:
        note += f" (boxes moved: {', '.join(moved)})"
    results.qc = [q for q in results.qc if not q.startswith("edited:")] + [note]
    if table_node is not None:
        add_results_table(scene, results, ref_volume_node=volume_node, table_node=table_node)
    if text_node is not None:
        add_results_text(scene, results, text_node.GetName(), volume_node, text_node=text_node)
    return results


# --------------------------------------------------------------------------------------------
# Saving and loading scenes
# --------------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "node"


def save_scene(scene, path: str | os.PathLike) -> Path:
    """Write every storable node next to ``path`` and the ``.mrml`` itself (atomically)."""
    path = Path(path).resolve()
    out_dir = path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    col = scene.GetNodesByClass("vtkMRMLStorableNode")
    for n in range(col.GetNumberOfItems()):
        node = col.GetItemAsObject(n)
        # Hidden storable nodes are Slicer's defaults (colour tables...): the application has them.
        if not node.GetSaveWithScene() or (node.GetHideFromEditors() and not node.IsA("vtkMRMLTableNode")):
            continue
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is None:
            continue
        storage = node.GetStorageNode()
        if storage is None:
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
        if storage is None:
            continue
        ext = storage.GetDefaultWriteFileExtension()
        stem = _safe(node.GetName())
        fname = f"{stem}.{ext}"
        i = 2
        while fname in used:
            fname = f"{stem}_{i}.{ext}"
            i += 1
        used.add(fname)
        target = out_dir / fname
        if hasattr(storage, "SetUseCompression"):
            storage.SetUseCompression(1)
        # Written in place: table storage writes a companion .schema.tsv under a name derived from
        # this one, so a temp-then-rename would leave the schema path pointing at the temp file.
        # The scene file itself is renamed into place last, so a reader never opens a half scene.
        storage.SetFileName(str(target))
        if not storage.WriteData(node):
            raise OSError(f"cannot write {fname} for node {node.GetName()!r}")
    scene.SetRootDirectory(str(out_dir))
    # Commit then rename. (atomic.atomic_path's hidden temp name confuses MRML's private-data folder logic.)
    tmp = out_dir / f"{path.stem}-{os.getpid()}-partial.mrml"
    try:
        scene.SetURL(str(path))
        if not scene.Commit(str(tmp)):
            raise OSError(f"cannot write scene {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    scene.SetURL(str(path))
    return path


def write_scene(output, out_dir: str | os.PathLike, options=None, name: str | None = None) -> Path:
    """``out_dir/scene.mrml`` with the input volume, both segmentations, tables, plot, ROI boxes,
    key images and the parameter node: what ``osteoai run --scene`` writes, openable in Slicer."""
    out_dir = Path(out_dir)
    hs = new_scene()
    try:
        options = options if options is not None else getattr(output, "options", None)
        settings = settings_from_options(options) if options is not None else Settings()
        png_dir = _write_key_pngs(output, out_dir)
        add_pipeline_output(hs.scene, output, name=name, settings=settings, surface=False, png_dir=png_dir)
        return save_scene(hs.scene, out_dir / "scene.mrml")
    finally:
        hs.close()


def _write_key_pngs(output, out_dir: Path) -> str | None:
    from .atomic import write_with

    wrote = None
    for k in output.key_images or []:
        png = getattr(k, "png", b"")
        if png:
            target = out_dir / "key_images" / f"{k.name}.png"
            if not target.exists():
                write_with(target, lambda p, data=png: p.write_bytes(data))
            wrote = "key_images"
    return wrote


def load_scene(path: str | os.PathLike) -> HeadlessScene:
    """A headless scene with ``path`` imported (volumes, segmentations, tables read from disk)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scene not found: {path}")
    hs = new_scene()
    hs.scene.SetURL(str(path.resolve()))
    if not hs.scene.Import():
        raise InputError(f"cannot read scene {path}")
    return hs


def nodes_by_kind(scene, kind: str, cls: str = "vtkMRMLNode") -> list:
    col = scene.GetNodesByClass(cls)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())
            if col.GetItemAsObject(i).GetAttribute(ATTR + "kind") == kind]  # fmt: skip


def table_to_rows(table_node) -> list[dict]:
    """Rows of a table node as dicts (numbers as float, NaN for missing)."""
    t = table_node.GetTable()
    cols = [t.GetColumn(c) for c in range(t.GetNumberOfColumns())]
    rows = []
    for r in range(t.GetNumberOfRows()):
        row = {}
        for col in cols:
            v = col.GetValue(r)
            row[col.GetName()] = v if isinstance(v, str) else float(v)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Teaching helpers (the OsteoAI panel's "Learn" section)
# --------------------------------------------------------------------------------------------


def add_calibration_fit(scene, results: Results, ref_volume_node=None, name: str | None = None):
    """Table and plot of the calibration: each reference's measured HU against its expected value,
    with the fitted line. Returns ``(table, chart)`` or ``(None, None)`` without references."""
    cal = results.calibration
    refs = [(n, r) for n, r in (cal.references or {}).items() if r.get("measured_hu") is not None]
    if not refs:
        return None, None
    phantom = any("expected_mg_cm3" in r for _, r in refs)
    ylab = "Expected (mg/cm3)" if phantom else "Expected HU"
    base = name or f"{ref_volume_node.GetName() if ref_volume_node is not None else 'CT'} calibration fit"
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", base)
    table.SetAttribute(ATTR + "kind", "calibration")
    rows = []
    for n, r in refs:
        expected = r.get("expected_mg_cm3" if phantom else "expected_hu")
        fit = None if phantom else cal.slope * r["measured_hu"] + cal.intercept
        rows.append([n, r["measured_hu"], expected, fit, 0 if r.get("used") is False else 1])
    header = [("Reference", "", "Reference tissue or phantom rod"),
              ("Measured HU", "HU", "Mean CT number measured in this scan"),
              (ylab, "mg/cm3" if phantom else "HU", "Value the reference should have"),
              ("Fit", "HU", "Calibration line at the measured value"),
              ("Used", "", "1 when the reference entered the fit")]  # fmt: skip
    _fill_table(table, header, rows, {"Reference"}, {"Used"})
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{base} chart")
    chart.SetTitle(f"Calibration ({cal.method}): HU_true = {cal.slope:.3f} x HU + {cal.intercept:.1f}")
    chart.SetXAxisTitle("measured HU")
    chart.SetYAxisTitle(ylab)
    for col, kind, color in ((ylab, slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter, (0.1, 0.3, 0.8)),
                             ("Fit", slicer.vtkMRMLPlotSeriesNode.PlotTypeLine, (0.85, 0.3, 0.1))):  # fmt: skip
        if col == "Fit" and phantom:
            continue
        s = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{base} {col}")
        s.SetAndObserveTableNodeID(table.GetID())
        s.SetXColumnName("Measured HU")
        s.SetYColumnName(col)
        s.SetLabelColumnName("Reference")
        s.SetPlotType(kind)
        s.SetColor(*color)
        if kind == slicer.vtkMRMLPlotSeriesNode.PlotTypeLine:
            s.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
    place_next_to(scene, table, ref_volume_node)
    place_next_to(scene, chart, ref_volume_node)
    return table, chart


def _erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    for axis in range(3):
        for shift in (1, -1):
            out &= np.roll(mask, shift, axis=axis)
    out[[0, -1]] = out[:, [0, -1]] = out[:, :, [0, -1]] = False  # np.roll wraps around
    return out


def bone_contrast(scene, volume_node, vertebrae_seg_node, roi_seg_node, level: str) -> dict:
    """Cortical shell versus trabecular ROI of one vertebra, for the teaching panel.

    The shell is the outer voxel layer of the vertebra segment; its HU is the median there. Returns
    ``{"level", "trabecular_hu", "cortical_hu", "roi_center_ras"}`` (values None when absent).
    """
    vol = volume_from_node(volume_node)
    lab = lv.IDS[level]
    vert = segmentation_to_labelmap(scene, vertebrae_seg_node, volume_node) == lab
    rois = segmentation_to_labelmap(scene, roi_seg_node, volume_node) == lab
    shell = vert & ~_erode(vert)
    out = {"level": level, "trabecular_hu": None, "cortical_hu": None, "roi_center_ras": None}
    if rois.any():
        out["trabecular_hu"] = float(vol.array[rois].mean())
        c = np.argwhere(rois).mean(0)[::-1]  # ijk
        out["roi_center_ras"] = (ijk_to_ras(volume_node) @ np.r_[c, 1.0])[:3].tolist()
    if shell.any():
        out["cortical_hu"] = float(np.median(vol.array[shell]))
    return out
