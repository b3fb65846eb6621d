"""The scan's own HU reference (hu_reference.estimate) moves with a linear change of the HU scale, so
that the mapped image, and every threshold applied to it, stays where it was (issue 10: HU' = 1.08 HU - 20
must change nothing)."""

from __future__ import annotations

import numpy as np
from OsteoAISegmentLib.hu_reference import estimate


def _body(seed: int = 0) -> np.ndarray:
    """Air around a body of fat and muscle; the air's histogram is skewed (a tail towards the body, as
    partial volume and the table give it), which a fixed-width mode window reads differently at
    another scale."""
    rng = np.random.default_rng(seed)
    vol = (-1000.0 + rng.gamma(1.5, 20.0, (24, 96, 96))).astype(np.float32)
    jj, ii = np.ogrid[:96, :96]
    r2 = (jj - 48) ** 2 + (ii - 48) ** 2
    body = r2 <= 34**2
    vol[:, body] = -100.0 + rng.normal(0, 12, (24, int(body.sum())))
    muscle = r2 <= 22**2
    vol[:, muscle] = 45.0 + rng.normal(0, 12, (24, int(muscle.sum())))
    return vol


def test_the_reference_follows_a_linear_change_of_the_hu_scale():
    vol = _body()
    a, b = estimate(vol), estimate(1.08 * vol - 20.0)
    assert a.found and np.isfinite(a.air) and np.isfinite(b.air)
    assert abs(b.scale / a.scale - 1.08) < 2e-4, (a, b)
    assert abs(b.offset - (1.08 * a.offset - 20.0)) < 0.3, (a, b)
    # the mapped images agree to a fraction of an HU over the whole range
    x = np.array([-1000.0, -100.0, 45.0, 150.0, 1000.0])
    assert np.abs(b.to_nominal(1.08 * x - 20.0) - a.to_nominal(x)).max() < 0.5


def test_a_crop_without_fat_or_air_says_its_thresholds_are_nominal():
    rng = np.random.default_rng(0)
    crop = (45.0 + rng.normal(0, 12, (20, 60, 60))).astype(np.float32)  # muscle and bone only
    crop[:, 20:40, 20:40] = rng.normal(400, 150, (20, 20, 20))  # trabecular and cortical bone
    ref = estimate(crop)
    assert not ref.calibrated and ref.scale == 1.0 and ref.offset == 0.0
    assert ref.qc() and ref.qc()[0].startswith("hu_reference:")
    assert estimate(_body()).qc() == []


def _chest_cut_by_the_field_of_view(seed: int = 0) -> np.ndarray:
    """Air around a body whose right lung (textured, -850 +- 60 HU) runs out of the image at its edge,
    as in a chest CT reconstructed on a field of view narrower than the chest: the lung then joins the
    edge-connected air and makes that set's median and MAD useless."""
    rng = np.random.default_rng(seed)
    vol = _body(seed)
    lung = np.zeros((96, 96), bool)
    lung[8:88, 0:46] = True
    vol[:, lung] = -850.0 + rng.normal(0, 60, (24, int(lung.sum())))
    return vol


def test_the_air_is_read_below_lungs_that_leave_the_field_of_view():
    vol = _chest_cut_by_the_field_of_view()
    a, b = estimate(vol), estimate(1.08 * vol - 20.0)
    whole = estimate(_body())  # the same body with its lungs inside the field of view
    assert abs(a.air - whole.air) < 8.0 and abs(a.scale / whole.scale - 1.0) < 0.01, (a, whole)
    assert abs(b.air - (1.08 * a.air - 20.0)) < 1.0 and abs(b.scale / a.scale - 1.08) < 1e-3, (a, b)


def test_a_lung_cropped_tight_is_not_taken_for_the_air_around_the_patient():
    rng = np.random.default_rng(1)
    vol = _body(1)
    vol[:, :, :] = np.where(vol < -500, -850.0 + rng.normal(0, 60, vol.shape), vol)  # no air, only lung
    assert np.isnan(estimate(vol).air)
