"""Results as nodes: the per-level table, the summary table, the vBMD plot with ACR bands and the
full results JSON as a text node."""

from __future__ import annotations

import json
from collections.abc import Callable

import slicer
import vtk
from OsteoAIBaseLib.atomic import json_default

from ..results import (
    ACR_NORMAL_ABOVE,
    ACR_OSTEOPOROSIS_BELOW,
    Results,
    acr_category,
)
from .constants import ATTR
from .scene import place_next_to


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
    ("Why", "", "Why that estimator: inside the AI model's domain, or which feature is out of it",
     lambda r: getattr(r, "vbmd_reason", "")),
    ("QC", "", "Quality-control flags (code: explanation)", lambda r: "; ".join(r.qc)),
    ("Used for diagnosis", "", "1 when this level enters the mean used for the diagnosis",
     lambda r: 1 if r.used_for_diagnosis else 0),
]  # fmt: skip


STRING_COLUMNS = {"Level", "Category", "Method", "Why", "QC"}


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
    text_node.SetText(json.dumps(results.to_dict(), indent=1, default=json_default))
    return text_node


def results_from_text(text_node) -> Results:
    return Results.from_dict(json.loads(text_node.GetText()))


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
