"""Internal calibration against the digital phantom's truth (known vBMD, tissue map, scanner scale).

Fast tests use a coarse phantom (256 x 256 at 1.4 mm, T12-L2). The accuracy sweep over seeds and
kVp and dose at the default resolution is slow (~2 min) and runs only on request:
``OSTEOAI_SLOW=1 .venv/bin/python -m pytest -m slow -s Testing/Python/test_calibration_phantom.py``.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from OsteoAILib import calibration, qc
from OsteoAILib.phantom import TISSUES
from OsteoAILib.reference_tissues import reference_voxels
from scipy import ndimage as ndi

COARSE = dict(levels="T12-L2", matrix=256, spacing=(1.4, 1.4, 2.0))
CORE_MM = 2.5  # as the phantom's own truth core


def _seg(ph):
    return SimpleNamespace(vertebrae=ph.vertebrae, bodies=ph.bodies, levels=[], info={}, qc=[])


_CORES: dict[int, dict] = {}


def _cores(ph):
    """label -> trabecular core (index arrays) >= 2.5 mm from cortex and vein, from the tissue map."""
    if id(ph) in _CORES:
        return _CORES[id(ph)]
    si, sj, sk = ph.volume.spacing
    trab = (ph.tissues == TISSUES["trabecular"]) & (ph.bodies > 0)
    boxes = ndi.find_objects(np.where(trab, ph.bodies, 0).astype(np.int32))
    out = {}
    for lv in ph.truth["levels"]:
        lab = lv["label"]
        if lv["partial"] or lab > len(boxes) or boxes[lab - 1] is None:
            continue
        sl = boxes[lab - 1]
        m = trab[sl] & (ph.bodies[sl] == lab)
        core = ndi.distance_transform_edt(np.pad(m, 1), sampling=(sk, sj, si))[1:-1, 1:-1, 1:-1] > CORE_MM
        if core.sum() >= 50:
            kk, jj, ii = np.nonzero(core)
            out[lab] = (kk + sl[0].start, jj + sl[1].start, ii + sl[2].start)
    _CORES[id(ph)] = out
    return out


def _errors(ph, arr=None, cal=None):
    arr = ph.volume.array if arr is None else arr
    vol = ph.volume.with_array(arr)
    cal = cal or calibration.calibrate(vol, _seg(ph))
    truth = {lv["label"]: lv["vbmd_mg_cm3"] for lv in ph.truth["levels"]}
    est = {lab: calibration.hu_to_vbmd(float(arr[m].mean()), cal) for lab, m in _cores(ph).items()}
    return {lab: est[lab] - truth[lab] for lab in est}, est, cal


@pytest.fixture(scope="module")
def ph_scaled(phantoms):
    # Air at -1020 HU: about a third of it is clipped at -1024 and estimated from the rest.
    return phantoms(seed=11, kvp=100, hu_scale=1.05, hu_offset=30.0, **COARSE)


@pytest.mark.parametrize("kvp,scale,offset", [(80, 0.95, -15.0), (140, 1.05, 20.0)])
def test_vbmd_matches_phantom_truth(phantoms, kvp, scale, offset):
    ph = phantoms(seed=kvp, kvp=kvp, hu_scale=scale, hu_offset=offset, **COARSE)
    err, _, cal = _errors(ph)
    assert cal.method == "internal" and cal.kvp == kvp
    assert len(err) >= 2
    assert np.mean(np.abs(list(err.values()))) <= 3.0, err
    assert cal.slope == pytest.approx(1 / scale, rel=0.03)


def test_references_land_in_the_right_tissue(ph_scaled):
    vox = reference_voxels(ph_scaled.volume, _seg(ph_scaled))
    for name, minimum in (("air", 0.99), ("fat", 0.95), ("muscle", 0.9), ("blood", 0.6)):
        t = ph_scaled.tissues[vox[name]["kji"]]
        assert np.mean(t == TISSUES[name]) >= minimum, name


def test_reference_hu_match_the_truth(ph_scaled):
    cal = calibration.calibrate(ph_scaled.volume, _seg(ph_scaled))
    for name, truth_hu in ph_scaled.truth["reference_hu"].items():
        r = cal.references[name]
        assert r["measured_hu"] == pytest.approx(truth_hu, abs=4.0), name
        assert r["expected_hu"] == pytest.approx(ph_scaled.truth["reference_hu_physics"][name], abs=0.01)


@pytest.mark.parametrize("a,b", [(0.9, -30.0), (1.1, 30.0)])  # the corners; the slow sweep scans the rest
def test_vbmd_invariant_under_linear_hu_change(ph_scaled, a, b):
    _, base, _ = _errors(ph_scaled)
    arr = np.round(a * ph_scaled.volume.array.astype(np.float32) + b).astype(np.int16)
    _, moved, _ = _errors(ph_scaled, arr)
    for lab in base:
        assert abs(moved[lab] - base[lab]) <= 0.02 * base[lab], (lab, base[lab], moved[lab])


def test_contrast_phantom_is_flagged_and_blood_left_out(phantoms):
    ph = phantoms(seed=5, kvp=120, contrast=True, **COARSE)
    cal = calibration.calibrate(ph.volume, _seg(ph))
    assert any(qc.code(f) == "contrast" for f in cal.qc)
    assert not cal.references["blood"]["used"] and "contrast" in cal.references["blood"]["why"]
    assert cal.method == "internal" and cal.residual_hu < 3.0


@pytest.mark.parametrize("kvp", [80, 140])
def test_beam_hardening_cupping_is_fitted(phantoms, kvp):
    """Cupping (20 HU at the body centre) lowers the deep aorta, muscle and spine more than the
    subcutaneous fat; the depth term of the fit takes it out of the spine's calibration."""
    ph = phantoms(seed=21 + kvp, kvp=kvp, beam_hardening=0.5, **COARSE)
    err, _, cal = _errors(ph)
    assert "cupping" in cal.notes and all(cal.references[n]["used"] for n in ("air", "fat", "muscle", "blood"))
    assert np.mean(np.abs(list(err.values()))) <= 3.0, err
    # Without the depth term the same scan reads ~7-10 mg/cm3 low: the term is doing the work.
    vox = calibration.reference_voxels(ph.volume, _seg(ph))
    refs = calibration.measure_voxels(ph.volume, vox)
    pts = {n: (refs[n]["measured_hu"], cal.references[n]["expected_hu"], 1.0) for n in refs}
    flat = calibration.robust_fit(pts)
    with_depth = calibration.robust_fit(pts, {n: refs[n]["depth_bins"] for n in refs})
    assert flat["cupping_hu"] == 0.0 and 10.0 < with_depth["cupping_hu"] < 40.0


def test_low_dose_adds_little_error(phantoms):
    ph = phantoms(seed=8, kvp=120, dose="ultralow", **COARSE)
    err, _, cal = _errors(ph)
    assert np.mean(np.abs(list(err.values()))) <= 4.0, err


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OSTEOAI_SLOW"), reason="accuracy sweep: set OSTEOAI_SLOW=1 to run")
def test_accuracy_sweep_default_resolution(phantoms):
    """MAE / bias over kVp x seeds x (standard dose, low dose, standard dose with beam-hardening
    cupping 0-0.5), each with a random scanner scale (0.9-1.1) and offset (-30..30 HU), on the
    phantom's default 0.7 x 0.7 x 1 mm grid."""
    rows = []
    rng = np.random.default_rng(0)
    cases = ("standard", "low", "cupping")  # cupping: standard dose, beam hardening 0-0.5 (0-20 HU)
    for case in cases:
        dose = "standard" if case == "cupping" else case
        for kvp in (80, 100, 120, 140):
            for seed in (1, 2, 3):
                a, b = float(rng.uniform(0.9, 1.1)), float(rng.uniform(-30, 30))
                bh = float(rng.uniform(0.0, 0.5)) if case == "cupping" else 0.0
                ph = phantoms(
                    seed=100 * seed + kvp,
                    kvp=kvp,
                    dose=dose,
                    levels="T12-L2",
                    hu_scale=a,
                    hu_offset=b,
                    beam_hardening=bh,
                )
                err, _, cal = _errors(ph)
                rows.append((case, kvp, seed, a, b, cal.method, list(err.values())))
    print("\ncase      kVp seed  scale  offset method    MAE   bias  (mg/cm3)")
    for dose, kvp, seed, a, b, method, e in rows:
        mae_e, bias_e = np.mean(np.abs(e)), np.mean(e)
        print(f"{dose:9s} {kvp:3d} {seed:4d} {a:6.3f} {b:7.1f} {method:8s} {mae_e:5.2f} {bias_e:+6.2f}")
    mae = {}
    for dose in cases:
        for kvp in (80, 100, 120, 140):
            e = [x for r in rows if r[0] == dose and r[1] == kvp for x in r[6]]
            print(f"{dose:9s} kVp {kvp}: MAE {np.mean(np.abs(e)):.2f}  bias {np.mean(e):+.2f}  n={len(e)}")
        e = [x for r in rows if r[0] == dose for x in r[6]]
        mae[dose] = float(np.mean(np.abs(e)))
        print(f"{dose:9s} all: MAE {mae[dose]:.2f}  bias {np.mean(e):+.2f}  n={len(e)}")
    assert mae["standard"] <= 5.0
    assert mae["low"] - mae["standard"] <= 2.0
    assert mae["cupping"] <= 5.0


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OSTEOAI_SLOW"), reason="invariance sweep: set OSTEOAI_SLOW=1 to run")
def test_invariance_sweep_default_resolution(phantoms):
    """vBMD change under HU' = a HU + b over a grid of a and b, at two kVp and with cupping; then with
    the scanner clipping at -1024 HU (outside air lost when a HU + b < -1024)."""
    worst, worst_clipped = 0.0, 0.0
    print()
    for kvp, seed, bh in ((80, 1, 0.0), (140, 2, 0.0), (120, 3, 0.4)):
        ph = phantoms(seed=seed, kvp=kvp, levels="T12-L2", beam_hardening=bh)
        _, base, _ = _errors(ph)
        for a in (0.9, 0.95, 1.05, 1.1):
            for b in (-30.0, 0.0, 30.0):
                scaled = np.round(a * ph.volume.array.astype(np.float32) + b)
                for clipped in (False, True):
                    arr = (np.maximum(scaled, -1024) if clipped else scaled).astype(np.int16)
                    _, moved, _ = _errors(ph, arr)
                    rel = max(abs(moved[k] - base[k]) / base[k] for k in base)
                    if clipped:
                        worst_clipped = max(worst_clipped, rel)
                    else:
                        worst = max(worst, rel)
                    print(
                        f"kVp {kvp} cupping {bh} a {a:4.2f} b {b:+4.0f} clipped {clipped!s:5}: "
                        f"max |dvBMD| {100 * rel:.2f}%"
                    )
    print(f"worst: {100 * worst:.2f}% unclipped, {100 * worst_clipped:.2f}% clipped at -1024 HU")
    assert worst <= 0.02 and worst_clipped <= 0.02
