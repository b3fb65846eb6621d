"""Per-level statistics, level choice for the diagnosis and the ACR categories."""

from __future__ import annotations

import json

import numpy as np
import pytest
from OsteoAILib import bmd
from OsteoAILib.results import (
    Calibration,
    LevelResult,
    Results,
    acr_category,
    pickhardt_triage,
)


def lv(level, label, vbmd, qc=(), mean_hu=None):
    return LevelResult(
        level=level,
        label=label,
        roi_volume_mm3=2000,
        roi_mean_hu=mean_hu or vbmd,
        vbmd_mg_cm3=vbmd,
        vbmd_ci95=(vbmd - 4, vbmd + 4),
        qc=list(qc),
    )


@pytest.mark.parametrize("v, cat", [(121, "normal"), (120, "osteopenia"), (80, "osteopenia"), (79.9, "osteoporosis")])
def test_acr_thresholds(v, cat):
    assert acr_category(v) == cat


@pytest.mark.parametrize(
    "hu, triage",
    [(100, "likely osteoporosis"), (110, "likely osteoporosis"), (140, "indeterminate"), (161, "likely normal")],
)
def test_pickhardt_triage(hu, triage):
    assert pickhardt_triage(hu) == triage


def test_default_prefers_l1_l2():
    levels = [lv("T11", 18, 130), lv("T12", 19, 120), lv("L1", 20, 100), lv("L2", 21, 90)]
    d = bmd.diagnose(levels)
    assert d.levels == ["L1", "L2"] and d.vbmd_mg_cm3 == pytest.approx(95) and d.category == "osteopenia"
    assert [x.used_for_diagnosis for x in levels] == [False, False, True, True]
    assert d.pickhardt_l1_hu == 100 and d.pickhardt_triage == "likely osteoporosis"


def test_fractured_level_is_replaced_and_reported():
    levels = [
        lv("T11", 18, 70),
        lv("T12", 19, 72),
        lv("L1", 20, 160, qc=["fracture: grade 2 (30% height loss)"]),
        lv("L2", 21, 74),
    ]
    d = bmd.diagnose(levels)
    assert d.levels == ["L2", "T12"]
    assert d.category == "osteoporosis"
    assert "L1 (fracture)" in d.criteria
    assert not levels[2].used_for_diagnosis


def test_non_excluding_flag_keeps_level():
    levels = [lv("L1", 20, 100, qc=["thick_slices: 5 mm"]), lv("L2", 21, 104)]
    assert bmd.diagnose(levels).levels == ["L1", "L2"]


def test_no_clean_level_gives_no_category():
    d = bmd.diagnose([lv("L1", 20, 100, qc=["fov_cut: L1 cut"])])
    assert d.category is None and d.vbmd_mg_cm3 is None and "no clean diagnostic level" in d.criteria


def test_user_levels():
    levels = [lv("T9", 16, 130), lv("T10", 17, 110), lv("L1", 20, 90)]
    d = bmd.diagnose(levels, "T9-T10")
    assert d.levels == ["T9", "T10"] and d.vbmd_mg_cm3 == pytest.approx(120)


def test_measure_levels_uses_calibration_and_roi_statistics():
    rng = np.random.default_rng(0)
    arr = rng.normal(150, 10, (20, 20, 20)).astype(np.float32)
    rois = np.zeros(arr.shape, np.int16)
    rois[2:8, 5:15, 5:15] = 20
    rois[12:18, 5:15, 5:15] = 19
    arr[12:18] += 50
    from OsteoAIBaseLib.volume import Volume

    cal = Calibration(
        method="phantom", slope=1.0, intercept=0.0, hu_per_mg_cm3=1.0, hu_at_zero_mg_cm3=0.0, residual_hu=0.0
    )
    levels = bmd.measure_levels(Volume(arr, (1, 1, 2)), rois, cal)
    assert [x.level for x in levels] == ["T12", "L1"]  # cranial first
    t12, l1 = levels
    assert t12.roi_mean_hu == pytest.approx(200, abs=2) and l1.roi_mean_hu == pytest.approx(150, abs=2)
    assert l1.roi_volume_mm3 == pytest.approx(600 * 2)
    assert l1.vbmd_ci95[0] < l1.vbmd_mg_cm3 < l1.vbmd_ci95[1]


def test_results_json_roundtrip():
    levels = [lv("L1", 20, 100), lv("L2", 21, 90)]
    res = Results(
        input={"source": "x"},
        levels=levels,
        diagnosis=bmd.diagnose(levels),
        calibration=Calibration(method="internal"),
        software={"osteoai": "0.1.0"},
    )
    d = json.loads(json.dumps(res.to_dict()))
    assert d["schema"] == "osteoai/results/v1"
    back = Results.from_dict(d)
    assert back.diagnosis.category == "osteopenia" and back.levels[1].level == "L2"


def test_interval_across_a_threshold_is_reported():
    levels = [lv("L1", 20, 119), lv("L2", 21, 121)]  # mean 120, CI 116-124 spans 120
    d = bmd.diagnose(levels)
    assert d.category == "osteopenia" and "near_threshold" in d.criteria and "spans 120" in d.criteria
    clear = bmd.diagnose([lv("L1", 20, 100), lv("L2", 21, 102)])
    assert "near_threshold" not in clear.criteria
