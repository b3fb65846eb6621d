"""Training data of the AI vBMD estimator: the contrast feature, the kVp x dose balance and the
voxel grids of the training phantoms, and the benchmark's marrow-fat decomposition (no phantoms
built except one small one; fast)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from OsteoAILib import physics
from OsteoAILib.results import Calibration
from OsteoAILib.vbmd_model import dataset
from OsteoAILib.vbmd_model import features as F

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "vbmd_accuracy.py"


def _cal(slope=1.0, intercept=0.0, blood_hu=40.0, blood_used=True):
    expected = {"air": -1000.0, "fat": -95.0, "muscle": 45.0, "blood": 40.0}
    measured = {**expected, "blood": blood_hu}
    refs = {
        name: {
            "measured_hu": (measured[name] - intercept) / slope,
            "expected_hu": hu,
            "sd_hu": 12.0,
            "n_voxels": 500,
            "used": True,
        }
        for name, hu in expected.items()
    }
    refs["blood"]["used"] = blood_used
    return Calibration(
        method="internal",
        slope=slope,
        intercept=intercept,
        residual_hu=1.5,
        kvp=120.0,
        references=refs,
        hu_per_mg_cm3=0.8,
        hu_at_zero_mg_cm3=-30.0,
    )


def _enhancement(cal, spacing=(1.0, 1.0, 2.0)):
    roi = np.random.default_rng(0).normal(150.0, 20.0, 400)
    return F.level_features(F.LevelInput(roi, cal, spacing))[F.FEATURE_NAMES.index("blood_enhancement_hu")]


def test_blood_enhancement_is_read_also_when_the_fit_left_the_blood_out():
    # an enhanced aorta at 390 HU (unenhanced 40): the fit leaves it out, the feature keeps its size
    assert _enhancement(_cal(blood_hu=390.0, blood_used=False)) == pytest.approx(350.0, abs=1e-3)
    assert _enhancement(_cal()) == pytest.approx(0.0, abs=1e-3)
    # on a scanner with another HU scale the calibrated enhancement is the same
    a, b = 1.1, 25.0
    assert _enhancement(_cal(1 / a, -b / a, blood_hu=390.0, blood_used=False)) == pytest.approx(350.0, abs=1e-3)
    no_blood = _cal()
    del no_blood.references["blood"]
    assert _enhancement(no_blood) == 0.0


def test_training_phantoms_cycle_kvp_and_dose():
    n = len(dataset.RANGES["kvp"]) * len(dataset.RANGES["dose"])
    ps = [dataset.training_params(100000 + i) for i in range(n)]
    cells = Counter((p["kvp"], p["dose"]) for p in ps)
    assert len(cells) == n and set(cells.values()) == {1}


def test_training_grids_span_the_asked_range_and_keep_the_field_of_view():
    ps = [dataset.training_params(100000 + i, "varied") for i in range(300)]
    px = np.array([p["spacing"][0] for p in ps])
    sl = np.array([p["spacing"][2] for p in ps])
    lo, hi = dataset.GRID_RANGES["pixel_mm"]
    assert px.min() >= lo and px.max() <= hi and px.max() - px.min() > 0.8 * (hi - lo)
    lo, hi = dataset.GRID_RANGES["slice_mm"]
    assert sl.min() >= lo and sl.max() <= hi and sl.max() - sl.min() > 0.8 * (hi - lo)
    fov = np.array([p["matrix"] * p["spacing"][0] for p in ps])
    assert np.all(np.abs(fov - dataset.GRID_RANGES["fov_mm"]) < 3.0)
    assert all(p["spacing"][0] == p["spacing"][1] for p in ps)
    assert dataset.training_params(100007, "varied") == dataset.training_params(100007, "varied")


def test_training_draws_leave_the_benchmark_phantoms_unchanged():
    # the grid has its own random stream: everything but kVp, dose and grid is sample_params' draw
    for s in (100003, 900005):
        base, p = dataset.sample_params(s), dataset.training_params(s, "varied")
        same = {k for k in base if k not in ("kvp", "dose", "matrix", "spacing")}
        assert {k: p[k] for k in same} == {k: base[k] for k in same}
        assert base["spacing"] == dataset.SMALL_GRID["spacing"]
    with pytest.raises(ValueError, match="grids"):
        dataset.training_params(100000, "coarse")


def _bench():
    spec = importlib.util.spec_from_file_location("vbmd_accuracy", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_marrow_fat_part_of_the_error_follows_the_physics():
    from OsteoAIBaseLib.volume import Volume

    bench = _bench()
    vol = Volume(np.zeros((2, 2, 2), np.float32), (1.0, 1.0, 1.0), meta={"age": 60.0})
    assumed = physics.marrow_fat_fraction_for_age(60.0)
    level = {"vbmd_mg_cm3": 100.0, "marrow_fat_fraction": assumed}
    assert bench.marrow_fat_error(vol, level, 140.0) == pytest.approx(0.0, abs=1e-9)
    # fattier marrow than assumed reads light, more so at high kVp
    fatty = {**level, "marrow_fat_fraction": assumed + 0.05}
    e80, e140 = bench.marrow_fat_error(vol, fatty, 80.0), bench.marrow_fat_error(vol, fatty, 140.0)
    assert e140 < e80 < 0
    # what the plain estimate of that level reads, from the same physics
    hu = physics.trabecular_hu(100.0, assumed + 0.05, 140.0)
    assert 100.0 + e140 == pytest.approx(physics.vbmd_from_hu(hu, 140.0, assumed), abs=1e-6)
    # no age tag: the standard fat is the one assumed
    untagged = Volume(np.zeros((2, 2, 2), np.float32), (1.0, 1.0, 1.0), meta={})
    std = {**level, "marrow_fat_fraction": physics.STANDARD_MARROW_FAT_FRACTION}
    assert bench.marrow_fat_error(untagged, std, 120.0) == pytest.approx(0.0, abs=1e-9)


def test_training_tissues_are_drawn_around_the_real_scans_offsets():
    """Fat, muscle and blood off the table by the (mean, SD) of dataset.REALISM, which reproduces the residuals
    the internal calibration leaves on the real scans (fat above, muscle below the table): not around 0."""
    from OsteoAILib import calibration, physics
    from OsteoAILib.reference_table import WEIGHTS

    draws = np.array(
        [[dataset.sample_realism(s)["tissue_offsets_hu"][k] for k in ("fat", "muscle", "blood")] for s in range(600)]
    )
    want = [dataset.REALISM["tissue_offsets_hu"][k] for k in ("fat", "muscle", "blood")]
    for col, (mean, sd) in zip(draws.T, want, strict=True):
        assert abs(col.mean() - mean) < 0.5 and abs(col.std() - sd) < 0.5
    # a four-reference fit of tissues off the table by the means leaves the real scans' median residuals
    exp = physics.reference_hu(120.0)
    off = {k: m for k, (m, _) in dataset.REALISM["tissue_offsets_hu"].items()}
    pts = {n: (exp[n] + off.get(n, 0.0), exp[n], WEIGHTS[n]) for n in exp}
    res = calibration.robust_fit(pts)["residuals"]
    assert res["fat"] == pytest.approx(4.8, abs=0.6) and res["muscle"] == pytest.approx(-4.3, abs=0.6)
    assert abs(res["blood"]) < 2.0 and abs(res["air"]) < 1.5
