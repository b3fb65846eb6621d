"""Radiomics of trabecular ROIs: feature families, known first-order values, provenance, CSV."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.volume import Volume
from OsteoAILib import radiomics_features as rf


@pytest.fixture(scope="module")
def two_rois():
    """Two box ROIs of known mean HU in Gaussian noise (L1 = 150 HU, L2 = 90 HU)."""
    rng = np.random.default_rng(3)
    arr = rng.normal(0.0, 25.0, (30, 48, 48)).astype(np.float32)
    rois = np.zeros(arr.shape, np.int16)
    arr[4:12, 10:30, 10:30] += 150.0
    rois[4:12, 10:30, 10:30] = 20
    arr[16:24, 10:30, 10:30] += 90.0
    rois[16:24, 10:30, 10:30] = 21
    return Volume(arr, (0.8, 0.8, 2.0)), rois, arr


def test_families_values_and_provenance(two_rois):
    vol, rois, arr = two_rois
    rows = rf.extract(vol, rois, [20, 21])
    assert [r["level"] for r in rows] == ["L1", "L2"]
    for r, lab in zip(rows, (20, 21), strict=True):
        families = {k.split("_", 1)[0] for k in r if "_" in k and k.split("_", 1)[0] in rf.FAMILIES}
        assert families == set(rf.FAMILIES)
        assert r["n_voxels"] == int((rois == lab).sum())
        # first-order statistics are exact functions of the ROI voxels
        vox = arr[rois == lab]
        assert r["firstorder_Mean"] == pytest.approx(vox.mean(), abs=1e-2)
        assert r["firstorder_Median"] == pytest.approx(np.median(vox), abs=1e-2)
        assert r["pyradiomics_version"]
        assert len(r["params_sha256"]) == 64
    assert rows[0]["firstorder_Mean"] > rows[1]["firstorder_Mean"] + 40


def test_too_small_roi_is_flagged_not_failed(two_rois):
    vol, rois, _ = two_rois
    rois = rois.copy()
    rois[0, 0, 0:3] = 22  # 3 voxels
    rows = rf.extract(vol, rois, [22])
    assert rows[0]["qc"].startswith("radiomics_skipped")
    assert not any(k.startswith("glcm_") for k in rows[0])


def test_bad_inputs(two_rois):
    vol, rois, _ = two_rois
    with pytest.raises(InputError):
        rf.extract(vol, rois[:-1], [20])
    with pytest.raises(InputError):
        rf.extract(vol, rois, [20], params_path="/nonexistent/params.yaml")


def test_csv_round_trip(two_rois):
    vol, rois, _ = two_rois
    rows = rf.extract(vol, rois, [20])
    parsed = list(csv.DictReader(io.StringIO(rf.to_csv(rows))))
    assert parsed[0]["level"] == "L1"
    assert float(parsed[0]["glcm_Contrast"]) == pytest.approx(rows[0]["glcm_Contrast"])


def test_phantom_rois_give_every_family_and_follow_density(phantoms):
    """Real ROIs (roi.py on the phantom's own vertebra masks) of a small phantom with known vBMD."""
    from OsteoAILib.vbmd_model.dataset import SMALL_GRID, measure

    ph = phantoms(seed=3, bmd={"T11": 100.0, "T12": 100.0, "L1": 60.0, "L2": 170.0}, **SMALL_GRID)
    rois, _, _ = measure(ph.volume, "truth", ph, kvp=120.0)
    rows = {r["level"]: r for r in rf.extract(ph.volume, rois.labelmap, [20, 21])}
    for r in rows.values():
        assert {k.split("_", 1)[0] for k in r if k.split("_", 1)[0] in rf.FAMILIES} == set(rf.FAMILIES)
        assert r["n_voxels"] >= 100
    # 110 mg/cm3 more mineral is ~100+ HU more at 120 kV
    assert rows["L2"]["firstorder_Mean"] > rows["L1"]["firstorder_Mean"] + 80
