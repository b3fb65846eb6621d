"""AI vBMD model building blocks: feature invariance, numpy == torch forward, conformal interval,
integrity checks on a small model written to a temporary folder (no phantoms, fast)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from OsteoAILib.results import Calibration
from OsteoAILib.vbmd_model import features as F
from OsteoAILib.vbmd_model import infer, train
from OsteoAILib.vbmd_model import model as mlp


def _cal(slope=1.0, intercept=0.0, kvp=120.0):
    refs = {
        name: {
            "measured_hu": (hu - intercept) / slope,
            "expected_hu": hu,
            "sd_hu": 12.0 / slope,
            "n_voxels": 500,
            "used": True,
        }
        for name, hu in {"air": -1000.0, "fat": -95.0, "muscle": 45.0, "blood": 40.0}.items()
    }
    return Calibration(
        method="internal",
        slope=slope,
        intercept=intercept,
        residual_hu=1.5,
        kvp=kvp,
        references=refs,
        hu_per_mg_cm3=0.8,
        hu_at_zero_mg_cm3=-30.0,
    )


def test_features_ignore_a_linear_hu_change():
    rng = np.random.default_rng(0)
    roi = rng.normal(130.0, 30.0, 800)
    a, b = 1.08, -22.0
    f1 = F.level_features(F.LevelInput(roi, _cal(), (0.8, 0.8, 2.0), age=70.0))
    # The scanner scale HU' = a*HU + b; a correct calibration maps HU' back: slope 1/a, intercept -b/a.
    f2 = F.level_features(F.LevelInput(a * roi + b, _cal(1 / a, -b / a), (0.8, 0.8, 2.0), age=70.0))
    moved = {F.FEATURE_NAMES.index(n) for n in ("cal_slope", "cal_intercept")}
    for i, name in enumerate(F.FEATURE_NAMES):
        if i not in moved:
            assert f1[i] == pytest.approx(f2[i], rel=1e-4, abs=1e-3), name
    assert f1[F.FEATURE_NAMES.index("age_known")] == 1.0
    f3 = F.level_features(F.LevelInput(roi, _cal(), (0.8, 0.8, 2.0), age=None))
    assert f3[F.FEATURE_NAMES.index("age_known")] == 0.0


def test_plain_feature_is_the_calibrated_hu_estimate():
    roi = np.full(100, 90.0)
    f = F.level_features(F.LevelInput(roi, _cal(), (1.0, 1.0, 1.0)))
    from OsteoAILib.calibration import hu_to_vbmd

    assert f[0] == pytest.approx(hu_to_vbmd(90.0, _cal()), rel=1e-5)


def test_numpy_forward_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = mlp.build_torch(F.N_FEATURES, 16)
    z = np.random.default_rng(1).normal(size=(5, F.N_FEATURES))
    ref = net(torch.tensor(z, dtype=torch.float32)).detach().numpy()
    got = mlp.forward(mlp.torch_to_arrays(net), z)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_conformal_multiplier_gives_the_asked_coverage():
    rng = np.random.default_rng(2)
    y = rng.normal(0.0, 3.0, 4000)  # true spread 3, model claims 1
    k = train.conformal_k(y[:2000], np.zeros(2000), np.ones(2000))
    assert k == pytest.approx(1.96 * 3.0, rel=0.1)
    covered = np.mean(np.abs(y[2000:]) <= k)
    assert 0.93 <= covered <= 0.97


@pytest.fixture()
def tiny_model(tmp_path):
    """A valid model folder with random weights (tests the file handling, not the accuracy)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    w = mlp.torch_to_arrays(mlp.build_torch(F.N_FEATURES, 8))
    train.save_weights(tmp_path / "weights.npz", w)
    meta = {
        "name": "vbmd-mlp",
        "version": "0.0-test",
        "format": infer.MODEL_FORMAT,
        "features": list(F.FEATURE_NAMES),
        "normalisation": {"mean": [0.0] * F.N_FEATURES, "std": [1.0] * F.N_FEATURES},
        "target_scale": 10.0,
        "interval_k": 1.96,
        "calibration_methods": ["internal"],
        "domain": {"kvp": [70.0, 130.0]},
        "weights_file": "weights.npz",
        "weights_sha256": infer.sha256_file(tmp_path / "weights.npz"),
    }
    (tmp_path / "model.json").write_text(json.dumps(meta))
    return tmp_path


def test_weights_are_byte_reproducible(tiny_model, tmp_path_factory):
    w = infer.load_model(tiny_model).weights
    other = tmp_path_factory.mktemp("again") / "weights.npz"
    train.save_weights(other, w)
    assert infer.sha256_file(other) == infer.sha256_file(tiny_model / "weights.npz")


def test_altered_or_missing_weights_are_refused(tiny_model, tmp_path):
    m = infer.load_model(tiny_model)
    f = np.zeros(F.N_FEATURES)
    f[F.FEATURE_NAMES.index("plain_vbmd")] = 100.0
    v, lo, hi = m.predict(f)
    assert lo < v < hi
    bad = tmp_path / "altered"
    shutil.copytree(tiny_model, bad)
    data = bytearray((bad / "weights.npz").read_bytes())
    data[-200] ^= 0xFF
    (bad / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(infer.ModelError, match="altered"):
        infer.load_model(bad)
    (bad / "weights.npz").unlink()
    with pytest.raises(infer.ModelError, match="missing"):
        infer.load_model(bad)
    with pytest.raises(infer.ModelError, match="not found"):
        infer.load_model(tmp_path / "nowhere")


def test_estimator_keeps_calibrated_hu_outside_the_domain(tiny_model):
    from OsteoAIBaseLib.volume import Volume

    m = infer.load_model(tiny_model)
    vol = Volume(np.zeros((2, 2, 2), np.float32), (1.0, 1.0, 1.0), meta={"age": 65.0})
    est, tag = infer.make_estimator(vol, _cal(), model=m)
    roi = np.random.default_rng(0).normal(120.0, 20.0, 300)
    v, (lo, hi), method = est(20, roi, _cal())
    assert method == f"ai:{tag}" and lo < v < hi
    assert est(20, roi, _cal(kvp=140.0)) is None  # kVp outside the trained range
    none_cal = _cal()
    none_cal.method = "none"
    assert est(20, roi, none_cal) is None  # trained on internal calibration only


def test_ignored_features_have_no_effect(tiny_model):
    meta = json.loads((tiny_model / "model.json").read_text())
    meta["normalisation"]["ignored"] = ["cal_slope", "cal_intercept"]
    (tiny_model / "model.json").write_text(json.dumps(meta))
    m = infer.load_model(tiny_model)
    f = np.random.default_rng(4).normal(size=F.N_FEATURES)
    g = f.copy()
    g[F.FEATURE_NAMES.index("cal_slope")] += 0.2
    g[F.FEATURE_NAMES.index("cal_intercept")] -= 30.0
    assert m.predict(f) == pytest.approx(m.predict(g))
    g[F.FEATURE_NAMES.index("cal_mean_hu")] += 30.0
    assert m.predict(f)[0] != pytest.approx(m.predict(g)[0])


def test_clipped_air_margin_bounds_the_slope_and_ignores_a_linear_hu_change():
    """Air clipped at -1024 HU and left out: the feature is where the fit puts the clip against -1000 HU (a
    too-steep fit puts it below, which true air, lying under the clip, rules out); 0 with air in the fit."""
    roi = np.random.default_rng(1).normal(130.0, 30.0, 500)
    i = F.FEATURE_NAMES.index("air_clip_margin_hu")

    def clipped(cal, clip):
        cal.references["air"].update(used=False, measured_hu=None, clipped_below_hu=clip)
        return cal

    assert F.level_features(F.LevelInput(roi, _cal(), (1.0, 1.0, 1.0)))[i] == 0.0
    steep = clipped(_cal(slope=1.1, intercept=40.0), -1024.0)
    assert F.level_features(F.LevelInput(roi, steep, (1.0, 1.0, 1.0)))[i] == pytest.approx(1.1 * -1024 + 40 + 1000)
    # HU' = a*HU + b moves the clip with the scan and the calibration absorbs a and b: the margin stays
    a, b = 1.08, -22.0
    f1 = F.level_features(F.LevelInput(roi, clipped(_cal(), -1024.0), (1.0, 1.0, 1.0)))[i]
    f2 = F.level_features(F.LevelInput(a * roi + b, clipped(_cal(1 / a, -b / a), a * -1024.0 + b), (1.0, 1.0, 1.0)))[i]
    assert f1 == pytest.approx(-24.0) and f2 == pytest.approx(f1, abs=1e-3)
