"""Internal calibration on a small synthetic torso with known reference tissues and vertebral density."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from OsteoAIBaseLib.volume import Volume
from OsteoAILib import calibration, physics, qc
from OsteoAILib.reference_tissues import measure_references, reference_voxels

SHAPE = (36, 150, 160)  # k, j, i
SPACING = (2.0, 2.0, 2.5)  # si, sj, sk mm


def torso(kvp=120.0, vbmd=150.0, scale=1.0, offset=0.0, noise=10.0, seed=0, aorta_hu=None, age=60.0):
    """(Volume, seg, trabecular mask). Canonical: i -> left, j -> posterior, k -> superior."""
    nk, nj, ni = SHAPE
    j, i = np.mgrid[:nj, :ni].astype(float)
    ff = physics.marrow_fat_fraction_for_age(age)
    H = {
        n: physics.hu(m, kvp)
        for n, m in (
            ("air", "air"),
            ("fat", "adipose"),
            ("muscle", "muscle"),
            ("blood", "blood"),
            ("soft", "skin"),
            ("cortex", "cortical_bone"),
        )
    }
    sl = np.full((nj, ni), H["air"])
    body = ((i - 80) / 62) ** 2 + ((j - 72) / 48) ** 2 <= 1
    inner = ((i - 80) / 55) ** 2 + ((j - 72) / 41) ** 2 <= 1  # 14 mm fat ring under the skin
    sl[body] = H["fat"]
    sl[inner] = H["soft"]
    vb = (i - 80) ** 2 + (j - 88) ** 2 <= 10**2
    cortex = vb & ~((i - 80) ** 2 + (j - 88) ** 2 <= 9**2)
    arch = ((np.abs(i - 80) <= 2) & (j > 98) & (j <= 108)) | ((np.abs(i - 80) <= 8) & (j > 97) & (j <= 100))
    muscle = (j >= 99) & (j <= 112) & (np.abs(i - 80) >= 5) & (np.abs(i - 80) <= 32)
    aorta = (i - 91) ** 2 + (j - 70) ** 2 <= 6**2
    sl[muscle] = H["muscle"]
    sl[(i - 91) ** 2 + (j - 70) ** 2 <= 10**2] = H["fat"]  # retroperitoneal fat around the aorta
    sl[aorta] = H["blood"] if aorta_hu is None else aorta_hu
    sl[arch] = H["cortex"]
    vol = np.repeat(sl[None], nk, axis=0)
    vert = np.zeros(SHAPE, np.int16)
    bodies = np.zeros(SHAPE, np.int16)
    trab = np.zeros(SHAPE, bool)
    for lab, (k0, k1) in ((20, (2, 16)), (21, (19, 33))):
        vol[k0:k1, vb] = physics.trabecular_hu(vbmd, ff, kvp)
        vol[k0:k1, cortex] = H["cortex"]
        vert[k0:k1][:, vb | arch] = lab
        bodies[k0:k1][:, vb] = lab
        trab[k0 + 2 : k1 - 2][:, (i - 80) ** 2 + (j - 88) ** 2 <= 7**2] = True
    for k0, k1 in ((0, 2), (16, 19), (33, 36)):
        vol[k0:k1, vb] = physics.hu("cartilage", kvp)
        vert[k0:k1][:, arch] = 21 if k0 > 10 else 20
    rng = np.random.default_rng(seed)
    vol = scale * vol + offset + rng.normal(0, noise, vol.shape)
    v = Volume(np.round(vol).astype(np.int16), SPACING, meta={"kvp": kvp, "kvp_source": "dicom", "age": age})
    seg = SimpleNamespace(vertebrae=vert, bodies=bodies, levels=[21, 20], info={}, qc=[])
    return v, seg, trab


# --------------------------------------------------------------------------- tests


def _vbmd(kvp=120.0, **kw):
    v, seg, trab = torso(kvp=kvp, **kw)
    cal = calibration.calibrate(v, seg)
    return calibration.hu_to_vbmd(float(v.array[trab].mean()), cal), cal


@pytest.mark.parametrize("kvp", [80, 100, 120, 140])
def test_internal_calibration_recovers_true_vbmd_at_each_kvp(kvp):
    vbmd, cal = _vbmd(kvp=kvp, vbmd=110.0, scale=1.04, offset=12.0, seed=kvp)
    assert cal.method == "internal"
    assert vbmd == pytest.approx(110.0, abs=3.0)
    assert cal.kvp == kvp and cal.kvp_source == "dicom"
    assert all(cal.references[n]["used"] for n in ("air", "fat", "muscle", "blood"))
    assert cal.residual_hu < 5.0
    assert cal.hu_per_mg_cm3 == pytest.approx(physics.mineral_hu_per_mg(kvp, physics.marrow_fat_fraction_for_age(60)))


def test_reference_rois_land_in_their_tissue():
    v, seg, _ = torso()
    nk, nj, ni = SHAPE
    j, i = np.mgrid[:nj, :ni]
    truth = {
        "air": ((i - 80) / 62) ** 2 + ((j - 72) / 48) ** 2 > 1,
        "fat": (((i - 80) / 62) ** 2 + ((j - 72) / 48) ** 2 <= 1) & (((i - 80) / 55) ** 2 + ((j - 72) / 41) ** 2 > 1)
        | ((i - 91) ** 2 + (j - 70) ** 2 <= 10**2) & ((i - 91) ** 2 + (j - 70) ** 2 > 6**2),
        "muscle": (j >= 99) & (j <= 112) & (np.abs(i - 80) >= 5) & (np.abs(i - 80) <= 32),
        "blood": (i - 91) ** 2 + (j - 70) ** 2 <= 6**2,
    }
    vox = reference_voxels(v, seg)
    for name, mask in truth.items():
        kk, jj, ii = vox[name]["kji"]
        assert mask[jj, ii].mean() > 0.97, name


@pytest.mark.parametrize("a,b", [(0.9, 30.0), (1.1, -30.0)])
def test_vbmd_invariant_to_linear_hu_change(a, b):
    v, seg, trab = torso(kvp=100.0, vbmd=95.0, seed=3)
    cal = calibration.calibrate(v, seg)
    base = calibration.hu_to_vbmd(float(v.array[trab].mean()), cal)
    # The same scan, rescaled after the fact (as another scanner's HU calibration would).
    v2 = v.with_array(np.round(a * v.array.astype(float) + b).astype(np.int16))
    cal2 = calibration.calibrate(v2, seg)
    moved = calibration.hu_to_vbmd(float(v2.array[trab].mean()), cal2)
    assert abs(moved - base) <= 0.02 * base
    assert cal2.slope == pytest.approx(cal.slope / a, rel=0.01)


def test_uncalibrated_conversion_is_biased_by_the_same_change():
    """The internal calibration earns its keep: 'none' moves with the scanner scale."""
    v, seg, trab = torso(kvp=120.0, vbmd=95.0, scale=1.1, offset=30.0)
    none = calibration.hu_to_vbmd(float(v.array[trab].mean()), calibration.calibrate(v, seg, method="none"))
    internal = calibration.hu_to_vbmd(float(v.array[trab].mean()), calibration.calibrate(v, seg))
    assert abs(internal - 95.0) < 3.0
    assert abs(none - 95.0) > 15.0


def test_contrast_enhanced_aorta_is_detected_and_left_out():
    vbmd, cal = _vbmd(aorta_hu=320.0)
    blood = cal.references["blood"]
    assert blood["measured_hu"] > 250 and not blood["used"]
    assert "contrast" in blood["why"]
    assert any(qc.code(f) == "contrast" for f in cal.qc)
    assert cal.method == "internal" and vbmd == pytest.approx(150.0, abs=3.0)
    assert qc.contrast_flags(measure_references(*torso(aorta_hu=320.0)[:2]))


def test_unenhanced_aorta_gives_no_contrast_flag():
    _, cal = _vbmd()
    assert not any(qc.code(f) == "contrast" for f in cal.qc)
    enhanced, why = calibration.detect_contrast(cal.references, cal.kvp)
    assert not enhanced and "no contrast" in why


def test_auto_falls_back_to_none_without_references():
    # A tight crop inside the body: no air, no fat ring, no aorta.
    v, seg, trab = torso()
    crop = v.with_array(np.ascontiguousarray(v.array[:, 80:100, 68:92]))
    seg_c = type(seg)(
        vertebrae=seg.vertebrae[:, 80:100, 68:92],
        bodies=seg.bodies[:, 80:100, 68:92],
        levels=seg.levels,
        info={},
        qc=[],
    )
    cal = calibration.calibrate(crop, seg_c, method="auto")
    assert cal.method == "none"
    codes = {qc.code(f) for f in cal.qc}
    assert {"calib_refs", "uncalibrated"} <= codes
    assert cal.references["air"]["why"]  # says why the reference is missing


def test_no_segmentation_still_calibrates_from_air_fat_muscle():
    v, _, trab = torso(kvp=120.0, scale=0.95, offset=-20.0)
    cal = calibration.calibrate(v, None)
    assert cal.method == "internal"
    assert not cal.references["blood"]["used"] and "segmentation" in cal.references["blood"]["why"]
    assert calibration.hu_to_vbmd(float(v.array[trab].mean()), cal) == pytest.approx(150.0, abs=4.0)


def _clipped(v, floor):
    return v.with_array(np.maximum(v.array, floor).astype(v.array.dtype))


def test_clipped_air_and_enhanced_aorta_still_calibrate_invariantly():
    # A scanner reading 9% hot puts air near -1090 HU, all of it clipped at the stored minimum
    # -1024; the enhanced aorta is left out, so fat and muscle alone fix the scale. The same scan
    # rescaled HU' = 0.9 HU - 30 (clip included) must give the same vBMD.
    v, seg, trab = torso(kvp=120.0, scale=1.09, offset=0.0, aorta_hu=350.0)
    v = _clipped(v, -1024)
    cal = calibration.calibrate(v, seg)
    assert cal.method == "internal"
    assert not cal.references["air"]["used"] and "clipped" in cal.references["air"]["why"]
    assert not cal.references["blood"]["used"]
    assert "calib_refs" in {qc.code(f) for f in cal.qc}  # says the fit rests on two tissues only
    vbmd = calibration.hu_to_vbmd(float(v.array[trab].mean()), cal)
    assert vbmd == pytest.approx(150.0, abs=5.0)
    v2 = v.with_array((0.9 * v.array.astype(np.float32) - 30.0).astype(np.float32))
    cal2 = calibration.calibrate(v2, seg)
    assert cal2.method == "internal"
    vbmd2 = calibration.hu_to_vbmd(float(v2.array[trab].mean()), cal2)
    assert abs(vbmd2 - vbmd) <= 0.02 * vbmd
