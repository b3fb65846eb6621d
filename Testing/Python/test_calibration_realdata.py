"""Internal calibration and QC on the real CTs in ../shared/data (skipped when absent)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from OsteoAIBaseLib.imageio import read_volume, to_canonical
from OsteoAILib import calibration, qc
from OsteoAILib.reference_tissues import reference_voxels

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def abdomen(shared_data):
    d = shared_data / "ts-abdomen-3mm"
    vol = to_canonical(read_volume(d / "ct.nii.gz"))
    labels = to_canonical(read_volume(d / "labels-totalseg-v2.nii.gz")).array
    body = to_canonical(read_volume(d / "totalseg_vertebrae_body.nii.gz")).array
    # TotalSegmentator 27 (L5) ... 50 (C1) -> VerSe 24 ... 1.
    vert = np.where((labels >= 27) & (labels <= 50), 51 - labels, 0).astype(np.int16)
    bodies = np.where(body == 1, vert, 0).astype(np.int16)
    levels = [lab for lab in range(1, 25) if (vert == lab).any()]
    seg = SimpleNamespace(vertebrae=vert, bodies=bodies, levels=levels, info={}, qc=[])
    return vol, labels, seg


def test_reference_rois_land_in_labelled_tissue(abdomen):
    vol, labels, seg = abdomen
    vox = reference_voxels(vol, seg)
    lab = {n: labels[vox[n]["kji"]] for n in ("air", "fat", "muscle", "blood")}
    assert np.mean(lab["air"] == 0) == 1.0
    assert np.mean(lab["fat"] == 0) > 0.98  # subcutaneous fat carries no TotalSegmentator label
    assert np.mean(np.isin(lab["muscle"], [86, 87])) > 0.8  # autochthon (erector spinae) left/right
    assert np.mean(lab["blood"] == 52) > 0.8  # aorta
    assert np.mean(vol.array[vox["air"]["kji"]]) < -950


def test_internal_calibration_on_real_abdomen(abdomen):
    vol, _, seg = abdomen
    cal = calibration.calibrate(vol, seg)
    assert cal.method == "internal"
    assert 0.95 < cal.slope < 1.05 and abs(cal.intercept) < 20 and cal.residual_hu < 10
    assert cal.references["blood"]["used"] and not any(qc.code(f) == "contrast" for f in cal.qc)
    assert any(qc.code(f) == "kvp_unknown" for f in cal.qc)  # no DICOM tags for this file
    # Fatty paraspinal muscle reads low; it is left out, not mistaken for beam-hardening cupping.
    assert not cal.references["muscle"]["used"] and "cupping" not in cal.notes
    # A rescaled copy of the real scan gives the same calibrated HU at trabecular densities.
    hu = np.array([100.0, 200.0])
    a, b = 1.07, -25.0
    cal2 = calibration.calibrate(vol.with_array(np.round(a * vol.array + b).astype(np.int32)), seg)
    v1 = calibration.hu_to_vbmd(hu, cal)
    v2 = calibration.hu_to_vbmd(a * hu + b, cal2)
    assert np.all(np.abs(v2 - v1) <= 0.02 * np.abs(v1))


def test_no_metal_or_fracture_false_alarms_on_real_abdomen(abdomen):
    vol, _, seg = abdomen
    for lab in seg.levels:
        flags = qc.level_flags(vol, seg, None, None, lab)
        assert not [f for f in flags if qc.code(f) == "metal"], flags


@pytest.mark.parametrize("name,kvp", [("tcia-acrin-petct-abdomen-4mm", 140.0), ("tcia-cmbcrc-chest-2.5mm", 120.0)])
def test_internal_calibration_without_segmentation(shared_data, name, kvp):
    vol = to_canonical(read_volume(shared_data / name / "ct.nii.gz"))
    cal = calibration.calibrate(vol, None)
    assert cal.method == "internal" and cal.kvp == kvp and cal.kvp_source == "sidecar"
    assert 0.95 < cal.slope < 1.05 and cal.residual_hu < 10
    assert -1010 < cal.references["air"]["measured_hu"] < -980
    assert qc.estimate_noise_sigma(vol, cal.references) < 60


def test_tight_crop_falls_back_with_reasons(shared_data):
    vol = to_canonical(read_volume(shared_data / "tptbox-lumbar-1.5mm" / "ct.nii.gz"))
    cal = calibration.calibrate(vol, None, method="auto")
    assert cal.method == "none"
    assert {"calib_refs", "uncalibrated"} <= {qc.code(f) for f in cal.qc}
    assert not cal.references["air"]["used"] and cal.references["air"]["why"]
