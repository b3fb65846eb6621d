"""The cohort tables: one row per study and level, built from the published study folders (so a resumed batch
and a clean one give the same table), written as CSV and Parquet with one fixed schema (typed columns that
pandas, DuckDB and Arrow read as they are)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from OsteoAIBaseLib.atomic import write_text, write_with

from .study import STUDY_FILE, study_dir

# (column, arrow type). Patient-level columns from the input CSV are added after "sex" as strings.
COLUMNS: list[tuple[str, str]] = [
    ("study_id", "string"), ("age", "float64"), ("sex", "string"),
    ("level", "string"), ("label", "int16"), ("roi_volume_mm3", "float64"), ("roi_mean_hu", "float64"),
    ("roi_median_hu", "float64"), ("roi_sd_hu", "float64"), ("vbmd_mg_cm3", "float64"),
    ("vbmd_ci95_low", "float64"), ("vbmd_ci95_high", "float64"), ("vbmd_method", "string"),
    ("used_for_diagnosis", "bool"), ("level_qc", "string"),
    ("study_vbmd_mg_cm3", "float64"), ("category", "string"), ("diagnostic_levels", "string"),
    ("pickhardt_l1_hu", "float64"), ("pickhardt_triage", "string"),
    ("calibration", "string"), ("calibration_slope", "float64"), ("calibration_intercept", "float64"),
    ("calibration_residual_hu", "float64"), ("kvp", "float64"), ("kvp_source", "string"),
    ("scan_qc", "string"), ("kernel", "string"), ("slice_thickness_mm", "float64"), ("manufacturer", "string"),
    ("osteoai_version", "string"), ("segmenter", "string"), ("vbmd_model", "string"),
]  # fmt: skip
_FIXED = {c for c, _ in COLUMNS}


def qc_codes(flags) -> str:
    """QC flags as their codes ("fracture | fov_cut"): the explanations are in each study's results.json."""
    return " | ".join(dict.fromkeys(str(f).split(":")[0].strip() for f in flags or []))


def study_rows(out_root, sid: str) -> list[dict]:
    d = study_dir(out_root, sid)
    res = json.loads((d / "results.json").read_text())
    rec = json.loads((d / STUDY_FILE).read_text())
    inp, diag, cal, sw = res["input"], res["diagnosis"], res["calibration"], res["software"]
    extra = rec.get("extra", {})
    study = {
        "study_id": sid, "age": _num(inp.get("age", extra.get("age"))), "sex": inp.get("sex") or extra.get("sex"),
        **{k: str(v) for k, v in extra.items() if k not in _FIXED},
        "study_vbmd_mg_cm3": _r(diag.get("vbmd_mg_cm3")), "category": diag.get("category"),
        "diagnostic_levels": ",".join(diag.get("levels") or []), "pickhardt_l1_hu": _r(diag.get("pickhardt_l1_hu")),
        "pickhardt_triage": diag.get("pickhardt_triage"), "calibration": cal.get("method"),
        "calibration_slope": _r(cal.get("slope"), 4), "calibration_intercept": _r(cal.get("intercept"), 2),
        "calibration_residual_hu": _r(cal.get("residual_hu")), "kvp": _num(cal.get("kvp")),
        "kvp_source": cal.get("kvp_source"), "scan_qc": qc_codes(res.get("qc")), "kernel": inp.get("kernel"),
        "slice_thickness_mm": _num(inp.get("slice_thickness")), "manufacturer": inp.get("manufacturer") or None,
        "osteoai_version": sw.get("osteoai"), "segmenter": sw.get("segmenter"), "vbmd_model": sw.get("vbmd_model"),
    }  # fmt: skip
    levels = res.get("levels") or [None]  # a study with no measurable level still gets its row
    rows = []
    for lv in levels:
        row = dict(study)
        if lv is not None:
            lo, hi = lv.get("vbmd_ci95") or (None, None)
            row.update(
                level=lv["level"],
                label=lv["label"],
                roi_volume_mm3=_r(lv.get("roi_volume_mm3"), 0),
                roi_mean_hu=_r(lv.get("roi_mean_hu")),
                roi_median_hu=_r(lv.get("roi_median_hu")),
                roi_sd_hu=_r(lv.get("roi_sd_hu")),
                vbmd_mg_cm3=_r(lv.get("vbmd_mg_cm3")),
                vbmd_ci95_low=_r(lo),
                vbmd_ci95_high=_r(hi),
                vbmd_method=lv.get("vbmd_method"),
                used_for_diagnosis=bool(lv.get("used_for_diagnosis")),
                level_qc=qc_codes(lv.get("qc")),
            )
        rows.append(row)
    return rows


def columns_for(rows: list[dict]) -> list[tuple[str, str]]:
    extra = sorted({k for r in rows for k in r} - _FIXED)
    return COLUMNS[:3] + [(c, "string") for c in extra] + COLUMNS[3:]


def write_cohort(out_root, rows: list[dict]) -> list[Path]:
    """cohort.csv and cohort.parquet, rows in study-id order so the same studies always give the same bytes."""
    rows = sorted(rows, key=lambda r: (r["study_id"], r.get("label") or 0))
    cols = columns_for(rows)
    names = [c for c, _ in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv(r.get(k)) for k in names})
    out = Path(out_root)
    paths = [write_text(out / "cohort.csv", buf.getvalue())]
    paths.append(write_with(out / "cohort.parquet", lambda p: _parquet(rows, cols, p)))
    return paths


def _parquet(rows, cols, path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.type_for_alias(t)) for c, t in cols])
    table = pa.Table.from_pylist([{c: r.get(c) for c, _ in cols} for r in rows], schema=schema)
    pq.write_table(table, str(path))


def write_failures(out_root, failures: list[dict]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["study_id", "reason"])
    for f in sorted(failures, key=lambda f: f["id"]):
        w.writerow([f["id"], f["reason"]])
    return write_text(Path(out_root) / "failures.csv", buf.getvalue())


def write_index(out_root, specs, outcomes: dict[str, dict]) -> Path:
    """index.csv links each study id to its input path: it is the key that re-identifies the cohort, so it
    stays with the data; the cohort table and folder names carry only the ids."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["study_id", "input", "status", "seconds", "cpu_s", "peak_mb"])
    for s in sorted(specs, key=lambda s: s.id):
        o = outcomes.get(s.id, {})
        w.writerow(
            [
                s.id,
                s.input,
                o.get("status", "not run"),
                _csv(o.get("seconds")),
                _csv(o.get("cpu_s")),
                _csv(o.get("peak_mb")),
            ]
        )
    return write_text(Path(out_root) / "index.csv", buf.getvalue())


def _num(x):
    try:
        return None if x is None or x == "" else float(x)
    except (TypeError, ValueError):
        return None


def _r(x, nd=2):
    x = _num(x)
    return None if x is None else round(x, nd)


def _csv(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v
