"""Teaching helpers (the OsteoAI panel's "Learn" section): calibration fit plot, cortical versus
trabecular bone."""

from __future__ import annotations

import numpy as np
import slicer
from OsteoAIBaseLib import levels as lv

from ..results import Results
from .constants import ATTR
from .scene import place_next_to
from .segmentations import segmentation_to_labelmap
from .tables import _fill_table
from .volumes import ijk_to_ras, volume_from_node


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
