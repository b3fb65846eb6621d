"""The realism knobs of the training phantoms (kernel, microstructure, streaks, habitus, tissue
composition) and the statistics the realism benchmark compares."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAIBaseLib.errors import InputError
from OsteoAILib.phantom import KERNELS, TISSUES, PhantomParams, make_phantom
from OsteoAILib.vbmd_model import dataset, realism

SMALL = {"matrix": 128, "spacing": (2.0, 2.0, 2.0), "levels": "T12-L1", "seed": 7}


def _muscle_noise_and_acf(ph):
    """Noise SD and lag-1 autocorrelation in the paraspinal muscle (homogeneous: noise only)."""
    arr = ph.volume.array.astype(float)
    m = ph.tissues == TISSUES["muscle"]
    from scipy import ndimage

    m = ndimage.binary_erosion(m, iterations=2)
    acf, _ = realism.roi_texture(arr, m, ph.volume.spacing)
    return float(arr[m].std()), acf


def test_kernels_shape_the_noise_as_on_the_real_pair():
    fine = {**SMALL, "matrix": 320, "spacing": (0.9, 0.9, 3.0), "levels": "L1"}  # the real pair's 0.84 mm pixels
    soft = make_phantom(PhantomParams(**fine, kernel="soft"))
    lung = make_phantom(PhantomParams(**fine, kernel="lung"))
    sd_soft, acf_soft = _muscle_noise_and_acf(soft)
    sd_lung, acf_lung = _muscle_noise_and_acf(lung)
    # the real B/L pair: 13 vs 49 HU, ROI lag-1 autocorrelation 0.81 vs 0.24
    assert 2.5 < sd_lung / sd_soft < 5.0
    assert acf_soft > acf_lung + 0.2
    assert soft.volume.meta["kernel"] == KERNELS["soft"]["tag"] and lung.truth["acquisition"]["psf_fwhm_mm"] == 0.6


def test_microstructure_adds_texture_but_no_mineral():
    plain = make_phantom(PhantomParams(**SMALL, noise_scale=0.0))
    tex = make_phantom(PhantomParams(**SMALL, noise_scale=0.0, texture_hu=90.0, texture_mm=1.5))
    for a, b in zip(plain.truth["levels"], tex.truth["levels"], strict=True):
        if a["trabecular_hu_noise_free"] is None:
            continue
        # zero mean over each body's core: the level's noise-free core mean does not move
        assert abs(a["trabecular_hu_noise_free"] - b["trabecular_hu_noise_free"]) < 0.5
        assert a["vbmd_mg_cm3"] == b["vbmd_mg_cm3"]
    core = (tex.tissues == TISSUES["trabecular"]) & (tex.bodies > 0)
    added = tex.volume.array[core].astype(float) - plain.volume.array[core].astype(float)
    assert added.std() > 25.0


def test_habitus_streaks_and_tissue_offsets_reach_the_image():
    base = make_phantom(PhantomParams(**SMALL))
    big = make_phantom(PhantomParams(**{**SMALL, "matrix": 200}, body_scale=1.3))
    k = base.volume.shape[0] // 2
    assert realism.body_diameter_mm(big.volume.array, k, big.volume.spacing) > 1.2 * realism.body_diameter_mm(
        base.volume.array, k, base.volume.spacing
    )
    off = make_phantom(PhantomParams(**SMALL, tissue_offsets_hu={"fat": 8.0, "muscle": -5.0}))
    assert off.truth["tissue_hu"]["fat"] == pytest.approx(base.truth["tissue_hu"]["fat"] + 8.0, abs=1e-3)
    assert off.truth["tissue_hu"]["muscle"] == pytest.approx(base.truth["tissue_hu"]["muscle"] - 5.0, abs=1e-3)
    streaky = make_phantom(PhantomParams(**SMALL, streaks_hu=40.0))
    diff = streaky.volume.array.astype(float) - base.volume.array.astype(float)
    assert np.abs(diff).max() > 20 and np.abs(diff).mean() < 10


def test_bad_realism_parameters_are_one_line_errors():
    with pytest.raises(InputError, match="kernel"):
        make_phantom(PhantomParams(**SMALL, kernel="bone"))
    with pytest.raises(InputError, match="tissue_offsets_hu"):
        make_phantom(PhantomParams(**SMALL, tissue_offsets_hu={"bone": 3.0}))
    with pytest.raises(InputError, match="body_scale"):
        make_phantom(PhantomParams(**SMALL, body_scale=3.0))


def test_realistic_training_draws_span_what_real_scans_show():
    ps = [dataset.training_params(100000 + i) for i in range(400)]
    assert {p["kernel"] for p in ps} == set(KERNELS)
    px = np.array([p["spacing"][0] for p in ps])
    sl = np.array([p["spacing"][2] for p in ps])
    assert px.min() < 0.7 and px.max() > 2.2 and sl.min() < 0.8 and sl.max() > 4.8
    # the field of view holds the body of every habitus
    assert all(p["matrix"] * p["spacing"][0] >= 2 * 151.0 * p["body_scale"] / 0.94 for p in ps)
    assert any(p["streaks_hu"] > 0 for p in ps) and any(p["streaks_hu"] == 0 for p in ps)
    assert dataset.training_params(100011) == dataset.training_params(100011)
    # the legacy draws (age, vBMD, scanner scale...) are those of sample_params: held-back phantoms unchanged
    base = dataset.sample_params(100011)
    assert {k: ps[11][k] for k in ("age", "bmd", "hu_scale", "hu_offset", "contrast")} == {
        k: base[k] for k in ("age", "bmd", "hu_scale", "hu_offset", "contrast")
    }


def test_roi_texture_tells_white_from_smooth():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    white = rng.normal(size=(8, 40, 40))
    smooth = ndimage.gaussian_filter(white, (0, 2, 2))
    mask = np.ones(white.shape, bool)
    acf_w, corr_w = realism.roi_texture(white, mask, (1.0, 1.0, 1.0))
    acf_s, corr_s = realism.roi_texture(smooth, mask, (1.0, 1.0, 1.0))
    assert abs(acf_w) < 0.05 and acf_s > 0.7 and corr_s > 1.0
    rows = realism.summarise(
        [{"features": {"cal_sd_hu": v}} for v in (10, 50, 90)],
        [{"features": {"cal_sd_hu": v}} for v in (20, 60)],
        ["cal_sd_hu"],
    )
    assert rows[0]["outside"] == pytest.approx(2 / 3)
    assert "cal_sd_hu" in realism.format_table(rows)
