"""Phantom anatomy and acquisition: rib pairs by connected components, noise sigma per dose,
reference tissues where calibration looks for them."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAILib.phantom import TISSUES, PhantomParams, make_phantom
from scipy import ndimage

CHEST = dict(matrix=160, spacing=(2.0, 2.0, 2.5), levels="T1-L1")


def _rib_pairs(ph) -> tuple[int, int]:
    ribs = np.isin(ph.tissues, [TISSUES["rib"], TISSUES["rib_marrow"]])
    ni = ribs.shape[2]
    counts = []
    for side in (ribs[:, :, : ni // 2], ribs[:, :, ni // 2 :]):
        lab, n = ndimage.label(side)
        sizes = np.bincount(lab.ravel())[1:]
        counts.append(int((sizes >= 20).sum()))
    return tuple(counts)


@pytest.mark.parametrize("pairs", [12, 11, 13])
def test_rib_pairs_are_countable(pairs):
    ph = make_phantom(PhantomParams(seed=7, rib_pairs=pairs, **CHEST))
    assert _rib_pairs(ph) == (pairs, pairs)
    assert ph.truth["rib_pairs"] == pairs
    assert len(ph.truth["rib_levels"]) == pairs


def test_no_ribs_below_t12():
    # (the anterior end of the 12th rib sinks to about L1, so look from L3 down)
    ph = make_phantom(PhantomParams(seed=8, matrix=160, spacing=(2.0, 2.0, 2.5), levels="L3-L5"))
    assert ph.truth["rib_levels"] == []
    assert not np.isin(ph.tissues, [TISSUES["rib"], TISSUES["rib_marrow"]]).any()
    assert "lung" not in [k for k, v in TISSUES.items() if (ph.tissues == v).sum() > 5000]


def _uniform_std(ph, tissue: str, erode: int = 3) -> float:
    m = ndimage.binary_erosion(ph.tissues == TISSUES[tissue], iterations=erode)
    assert m.sum() > 2000
    return float(ph.volume.array[m].std())


@pytest.mark.parametrize("dose", ["standard", "low", "ultralow"])
def test_noise_sigma_matches_dose(dose):
    ph = make_phantom(PhantomParams(seed=9, dose=dose, matrix=192, spacing=(1.5, 1.5, 2.0), levels="T11-L2"))
    sigma = ph.truth["noise_sigma_hu"]
    assert sigma == pytest.approx(ph.volume.meta["noise_sigma_hu"])
    # the liver is large and uniform; in air the clipping at -1024 would bias the spread
    assert _uniform_std(ph, "organ") == pytest.approx(sigma, rel=0.1)


def test_noise_levels_scale_with_dose_class_and_voxel_size():
    std = make_phantom(PhantomParams(seed=1, dose="standard", matrix=96, spacing=(3, 3, 3), levels="L1"))
    ul = make_phantom(PhantomParams(seed=1, dose="ultralow", matrix=96, spacing=(3, 3, 3), levels="L1"))
    assert ul.truth["noise_sigma_hu"] / std.truth["noise_sigma_hu"] == pytest.approx(4.0, rel=1e-3)
    # 10 HU at the reference 0.7 x 0.7 x 1.0 mm voxel, less in larger voxels
    assert std.truth["noise_sigma_hu"] == pytest.approx(10.0 * np.sqrt(0.49 / 27.0), rel=1e-3)


def test_reference_tissues_present_with_their_hu():
    ph = make_phantom(PhantomParams(seed=4, matrix=192, spacing=(1.5, 1.5, 2.0), levels="T11-L2"))
    ref = ph.truth["reference_hu"]
    for tissue, key in (("fat", "fat"), ("muscle", "muscle"), ("blood", "blood")):
        m = ndimage.binary_erosion(ph.tissues == TISSUES[tissue], iterations=2)
        assert m.sum() > 200, tissue
        assert ph.volume.array[m].mean() == pytest.approx(ref[key], abs=3.0), tissue
    # descending aorta: left (+x, larger i) and anterior (smaller j) of the vertebral bodies
    l1 = next(e for e in ph.truth["levels"] if e["level"] == "L1")
    k = int(round(l1["centre_kji"][0]))
    jj, ii = np.nonzero(ph.tissues[k] == TISSUES["blood"])
    assert ii.mean() > l1["centre_kji"][2] and jj.mean() < l1["centre_kji"][1]
