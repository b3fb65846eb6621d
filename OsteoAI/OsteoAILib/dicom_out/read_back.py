"""Read an OsteoAI SR back with highdicom into results.json's shape, and compare the two: the proof that
a PACS receives every number ``results.json`` holds."""

from __future__ import annotations

import math
import os

from . import codes

_LEVEL_NUMBERS = {  # (concept value, derivation value) -> results.json level key
    (codes.VOLUME.value, None): "roi_volume_mm3",
    (codes.ATTENUATION.value, codes.MEAN.value): "roi_mean_hu",
    (codes.ATTENUATION.value, codes.MEDIAN.value): "roi_median_hu",
    (codes.ATTENUATION.value, codes.SD.value): "roi_sd_hu",
    (codes.VBMD.value, None): "vbmd_mg_cm3",
    (codes.VBMD_LOW.value, None): "ci_low",
    (codes.VBMD_HIGH.value, None): "ci_high",
    (codes.PICKHARDT_HU.value, None): "pickhardt_l1_hu",
    (codes.CAL_SLOPE.value, None): "slope",
    (codes.CAL_INTERCEPT.value, None): "intercept",
    (codes.CAL_RESIDUAL.value, None): "residual_hu",
    (codes.CAL_KVP.value, None): "kvp",
    (codes.MINERAL_SENSITIVITY.value, None): "hu_per_mg_cm3",
    (codes.HU_AT_ZERO.value, None): "hu_at_zero_mg_cm3",
}
_REFERENCE_KEYS = {f"ref-{suffix}": key for key, (suffix, _, _) in codes.REFERENCE_NUMBERS.items()}
_TEXT_KEYS = {
    codes.VBMD_METHOD.value: "vbmd_method",
    codes.DIAGNOSTIC_LEVELS.value: "levels",
    codes.CRITERIA.value: "criteria",
    codes.CAL_METHOD.value: "method",
    codes.CAL_KVP_SOURCE.value: "kvp_source",
    codes.CAL_NOTES.value: "notes",
    codes.REFERENCE_WHY.value: "why",
}


def _group_items(group):
    """(measurements, codes, texts, tracking id) of one TID 1501/1411 measurement group."""
    numbers, coded, texts, tracking = {}, {}, {}, ""
    for item in group[0].ContentSequence:
        name = item.name.value
        vt = item.value_type.value
        if vt == "NUM":
            derivation = None
            for sub in getattr(item, "ContentSequence", []):
                if sub.name.value == "121401":  # Derivation
                    derivation = sub.value.value
            numbers[(name, derivation)] = float(item.value)
        elif vt == "CODE":
            coded[name] = item.value.meaning
        elif vt == "TEXT":
            if name == "112039":  # Tracking Identifier
                tracking = item.value
            else:
                texts.setdefault(name, []).append(item.value)
    return numbers, coded, texts, tracking


def read_sr(path: str | os.PathLike) -> dict:
    """{"levels": {level: {...}}, "diagnosis": {...}, "calibration": {...}, "references": {...}, "qc": [...]},
    keys as in results.json (a 95% interval as "ci_low"/"ci_high")."""
    import highdicom as hd

    sr = hd.sr.srread(path)
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups = report.get_volumetric_roi_measurement_groups() + report.get_image_measurement_groups()
    out: dict = {"levels": {}, "diagnosis": {}, "calibration": {}, "references": {}, "qc": []}
    for g in groups:
        numbers, coded, texts, tracking = _group_items(g)
        row = {_LEVEL_NUMBERS[k]: v for k, v in numbers.items() if k in _LEVEL_NUMBERS}
        row.update({_TEXT_KEYS[k]: v[0] for k, v in texts.items() if k in _TEXT_KEYS})
        flags = texts.get(codes.QC_FLAG.value, [])
        if tracking.endswith(" trabecular ROI"):
            level = tracking.split()[0]
            row["heights_mm"] = {
                k[0].removeprefix("height-"): v for k, v in numbers.items() if k[0].startswith("height-")
            }
            row["used_for_diagnosis"] = coded.get(codes.USED_FOR_DIAGNOSIS.value) == "Yes"
            row["qc"] = flags
            out["levels"][level] = row
        elif tracking == "Diagnosis":
            row["category"] = coded.get(codes.ACR_CATEGORY.value, "").lower() or None
            row["pickhardt_triage"] = coded.get(codes.PICKHARDT_TRIAGE.value)
            row["levels"] = row["levels"].split(", ") if row.get("levels") else []
            out["diagnosis"] = row
            out["qc"] = flags
        elif tracking == "Calibration":
            row["qc"] = flags
            out["calibration"] = row
        elif tracking.startswith("Calibration reference: "):
            ref = {_REFERENCE_KEYS[k[0]]: v for k, v in numbers.items() if k[0] in _REFERENCE_KEYS}
            ref["used"] = coded.get(codes.REFERENCE_USED.value) == "Yes"
            if "why" in row:
                ref["why"] = row["why"]
            out["references"][tracking.removeprefix("Calibration reference: ")] = ref
    return out


def _same(a, b, tol=1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


def compare(results: dict, back: dict) -> list[str]:
    """Differences between results.json and what the SR gave back; [] when every number came through."""
    diffs: list[str] = []

    def check(where, want, got):
        if not _same(want, got):
            diffs.append(f"{where}: results.json {want!r}, SR {got!r}")

    for lv in results["levels"]:
        got = back["levels"].get(lv["level"])
        if got is None:
            diffs.append(f"{lv['level']}: missing from the SR")
            continue
        for k in ("roi_volume_mm3", "roi_mean_hu", "roi_median_hu", "roi_sd_hu", "vbmd_mg_cm3", "used_for_diagnosis"):
            check(f"{lv['level']}.{k}", lv[k], got.get(k))
        ci = lv["vbmd_ci95"] or (None, None)
        check(f"{lv['level']}.ci95_low", ci[0], got.get("ci_low"))
        check(f"{lv['level']}.ci95_high", ci[1], got.get("ci_high"))
        check(f"{lv['level']}.vbmd_method", lv["vbmd_method"] or None, got.get("vbmd_method"))
        check(f"{lv['level']}.qc", "|".join(lv["qc"]), "|".join(got.get("qc", [])))
        for h, v in (lv.get("extra", {}).get("heights_mm") or {}).items():
            check(f"{lv['level']}.height_{h}", v, got["heights_mm"].get(h))
    d, gd = results["diagnosis"], back["diagnosis"]
    for k in ("vbmd_mg_cm3", "category", "pickhardt_l1_hu", "pickhardt_triage", "criteria"):
        check(f"diagnosis.{k}", d[k] or None, gd.get(k))
    check("diagnosis.levels", ",".join(d["levels"]), ",".join(gd.get("levels", [])))
    ci = d["vbmd_ci95"] or (None, None)
    check("diagnosis.ci95_low", ci[0], gd.get("ci_low"))
    check("diagnosis.ci95_high", ci[1], gd.get("ci_high"))
    check("qc", "|".join(results["qc"]), "|".join(back["qc"]))
    c, gc = results["calibration"], back["calibration"]
    for k in ("method", "slope", "intercept", "residual_hu", "kvp", "kvp_source", "hu_per_mg_cm3", "hu_at_zero_mg_cm3"):
        check(f"calibration.{k}", c[k], gc.get(k))
    check("calibration.notes", c["notes"] or None, gc.get("notes"))
    check("calibration.qc", "|".join(c["qc"]), "|".join(gc.get("qc", [])))
    for name, ref in c["references"].items():
        got = back["references"].get(name, {})
        for k in (*codes.REFERENCE_NUMBERS, "used"):
            if k in ref:
                check(f"calibration.references.{name}.{k}", ref[k], got.get(k))
    return diffs
