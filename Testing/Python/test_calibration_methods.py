"""Calibration methods without images: the robust fit, phantom rods, 'none', kVp, hu_to_vbmd."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.volume import Volume
from OsteoAILib import calibration, physics, reference_table
from OsteoAILib.results import Calibration


def _points(kvp, a=1.0, b=0.0, bias=None):
    exp = physics.reference_hu(kvp)
    bias = bias or {}
    # measured = (true + biological bias) on a scanner with HU' = a HU + b
    return {n: (a * (exp[n] + bias.get(n, 0.0)) + b, exp[n], reference_table.WEIGHTS[n]) for n in exp}


@pytest.mark.parametrize("a,b", [(1.0, 0.0), (0.9, -30.0), (1.1, 30.0)])
def test_fit_inverts_a_linear_scanner_scale(a, b):
    fit = calibration.robust_fit(_points(100, a, b))
    assert fit["slope"] == pytest.approx(1 / a, rel=1e-6)
    assert fit["intercept"] == pytest.approx(-b / a, abs=1e-6)
    assert fit["rms"] < 1e-6 and not fit["dropped"]


def test_fit_drops_one_outlier_but_never_air():
    fit = calibration.robust_fit(_points(120, 1.02, 5.0, bias={"muscle": -25.0}))
    assert set(fit["dropped"]) == {"muscle"}
    assert fit["slope"] == pytest.approx(1 / 1.02, rel=1e-3)
    # An air reading far off cannot be voted out by the soft tissues.
    fit = calibration.robust_fit(_points(120, bias={"air": 60.0}))
    assert "air" in fit["used"]


def test_fit_keeps_small_biological_spread():
    fit = calibration.robust_fit(_points(120, bias={"fat": 4.0, "muscle": -5.0, "blood": 3.0}))
    assert not fit["dropped"] and fit["rms"] < 6.0


def test_hu_to_vbmd_matches_physics_inverse():
    cal = Calibration(method="internal", slope=0.95, intercept=7.0, kvp=100.0)
    ff = physics.STANDARD_MARROW_FAT_FRACTION
    cal.hu_at_zero_mg_cm3 = physics.trabecular_hu(0, ff, 100.0)
    cal.hu_per_mg_cm3 = physics.mineral_hu_per_mg(100.0, ff)
    for vbmd in (50.0, 120.0, 200.0):
        true = physics.trabecular_hu(vbmd, ff, 100.0)
        measured = (true - 7.0) / 0.95
        assert calibration.hu_to_vbmd(measured, cal) == pytest.approx(vbmd, abs=1e-6)
    arr = calibration.hu_to_vbmd(np.array([100.0, 150.0]), cal)
    assert arr.shape == (2,)
    # An explicit marrow fat fraction overrides the one baked into the calibration.
    fatty = calibration.hu_to_vbmd(100.0, cal, marrow_fat_fraction=0.7)
    assert fatty > calibration.hu_to_vbmd(100.0, cal)


def test_phantom_rods():
    rods = [(0.5 + 1.3 * d, d) for d in (0.0, 50.0, 100.0, 200.0)]
    cal = calibration.calibrate(Volume(np.zeros((4, 4, 4))), None, method="phantom", phantom_pairs=rods)
    assert cal.method == "phantom"
    assert cal.hu_per_mg_cm3 == pytest.approx(1.3) and cal.hu_at_zero_mg_cm3 == pytest.approx(0.5)
    assert calibration.hu_to_vbmd(0.5 + 1.3 * 140.0, cal) == pytest.approx(140.0)
    assert cal.residual_hu == pytest.approx(0.0, abs=1e-9)
    assert not [f for f in cal.qc if f.startswith("calib_fit")]


@pytest.mark.parametrize(
    "pairs", [None, [], [(100, 50.0)], [(100, 50.0), (90, 50.0)], [(200, 0.0), (100, 100.0)], "nonsense"]
)
def test_phantom_bad_pairs_are_input_errors(pairs):
    with pytest.raises(InputError):
        calibration.calibrate(Volume(np.zeros((4, 4, 4))), None, method="phantom", phantom_pairs=pairs)


def test_unknown_method_is_an_input_error():
    with pytest.raises(InputError, match="unknown calibration method"):
        calibration.calibrate(Volume(np.zeros((4, 4, 4))), None, method="magic")


def test_none_is_the_standard_conversion_and_flagged():
    cal = calibration.calibrate(Volume(np.zeros((4, 4, 4))), None, method="none")
    assert cal.method == "none" and cal.slope == 1.0 and cal.intercept == 0.0
    assert cal.kvp == 120.0 and cal.kvp_source == "default"
    codes = [f.split(":")[0] for f in cal.qc]
    assert "uncalibrated" in codes and "kvp_unknown" in codes
    ff = physics.STANDARD_MARROW_FAT_FRACTION
    assert calibration.hu_to_vbmd(physics.trabecular_hu(100.0, ff, 120.0), cal) == pytest.approx(100.0)


@pytest.mark.parametrize(
    "meta,user,expect",
    [
        ({"kvp": 100.0, "kvp_source": "dicom"}, None, (100.0, "dicom")),
        ({"kvp": 140.0}, None, (140.0, "sidecar")),
        ({"kvp": 140.0, "format": "dicom"}, None, (140.0, "dicom")),
        ({"tags": {"KVP": 80}}, None, (80.0, "sidecar")),
        ({"kvp": 100.0}, 135.0, (135.0, "user")),
        ({}, None, (120.0, "default")),
        ({"kvp": 20.0}, None, (120.0, "default")),
    ],
)
def test_kvp_resolution(meta, user, expect):
    kvp, source, flags = calibration.resolve_kvp(Volume(np.zeros((2, 2, 2)), meta=meta), user)
    assert (kvp, source) == expect
    assert bool(flags) == (source == "default")


def test_marrow_fat_from_age():
    ff, why = calibration.marrow_fat_fraction(Volume(np.zeros((2, 2, 2)), meta={"age": 30.0}))
    assert ff == pytest.approx(physics.marrow_fat_fraction_for_age(30.0)) and "30" in why
    ff, why = calibration.marrow_fat_fraction(Volume(np.zeros((2, 2, 2))))
    assert ff == physics.STANDARD_MARROW_FAT_FRACTION and "unknown" in why


def test_detect_contrast_from_reference_numbers():
    exp = physics.reference_hu(120.0)
    refs = {n: {"measured_hu": 1.05 * v + 10} for n, v in exp.items()}
    assert calibration.detect_contrast(refs, 120.0)[0] is False
    refs["blood"]["measured_hu"] = 1.05 * 250 + 10
    enhanced, why = calibration.detect_contrast(refs, 120.0)
    assert enhanced and why.startswith("contrast:")
    assert calibration.detect_contrast({"air": {"measured_hu": -1000}}, 120.0)[0] is False


def _cupped(kvp, a, b, c, depths):
    """Points and depth bins of a scanner with HU' = a (HU - c depth) + b."""
    exp = physics.reference_hu(kvp)
    bins = {n: [(d, a * (exp[n] - c * d) + b, 1000) for d in depths[n]] for n in exp}
    pts = {n: (float(np.mean([m for _, m, _ in bins[n]])), exp[n], reference_table.WEIGHTS[n]) for n in exp}
    return pts, bins


DEPTHS = {"air": [0.0], "fat": [0.05, 0.15, 0.3], "muscle": [0.4, 0.55, 0.7], "blood": [0.95, 0.99]}


@pytest.mark.parametrize("a,b", [(1.0, 0.0), (0.9, -30.0), (1.1, 30.0)])
def test_fit_recovers_cupping_under_any_scale(a, b):
    pts, bins = _cupped(120, a, b, 20.0, DEPTHS)
    fit = calibration.robust_fit(pts, bins)
    assert fit["cupping_hu"] == pytest.approx(20.0, abs=0.5)
    assert fit["slope"] == pytest.approx(1 / a, rel=1e-3) and fit["rms"] < 0.5
    # No cupping in the data: none is fitted.
    pts0, bins0 = _cupped(120, a, b, 0.0, DEPTHS)
    assert calibration.robust_fit(pts0, bins0)["cupping_hu"] == pytest.approx(0.0, abs=0.5)


def test_low_muscle_alone_is_not_taken_for_cupping():
    pts, bins = _cupped(120, 1.0, 0.0, 0.0, DEPTHS)
    bins["muscle"] = [(d, m - 20.0, n) for d, m, n in bins["muscle"]]  # fatty muscle, blood normal
    pts["muscle"] = (pts["muscle"][0] - 20.0, *pts["muscle"][1:])
    fit = calibration.robust_fit(pts, bins)
    assert fit["cupping_hu"] == 0.0 and "muscle" in fit["dropped"]
