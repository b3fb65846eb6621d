"""QC flags: each check on a case that must raise it and one that must not."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from OsteoAIBaseLib.volume import Volume
from OsteoAILib import calibration, qc
from OsteoAILib.results import Calibration

COARSE = dict(levels="T11-L2", matrix=256, spacing=(1.4, 1.4, 2.0))


def _seg(ph):
    levels = [lv["label"] for lv in ph.truth["levels"]]
    partial = [lv["label"] for lv in ph.truth["levels"] if lv["partial"]]
    return SimpleNamespace(
        vertebrae=ph.vertebrae, bodies=ph.bodies, levels=levels, info={"partial_levels": partial}, qc=[]
    )


@pytest.fixture(scope="module")
def fractured(phantoms):
    return phantoms(seed=3, fracture={"L1": 0.45}, **COARSE)


def test_flag_table():
    assert {
        "fracture",
        "roi_small",
        "fov_cut",
        "body_cut",
        "metal",
        "implausible",
        "no_roi",
        "seg_suspect",
    } == qc.EXCLUDING
    assert not {"contrast", "noise", "calib_fit", "uncalibrated"} & qc.EXCLUDING
    assert all(text for _, text in qc.FLAGS.values())
    flags = ["noise: high", "fracture: L1 grade 2", "contrast: aorta 300 HU"]
    assert qc.excluding_reasons(flags) == ["fracture: L1 grade 2"]
    assert qc.code("roi_small: T12 ROI 300 mm3") == "roi_small"


@pytest.mark.parametrize("loss,grade", [(0.0, 0), (0.19, 0), (0.2, 1), (0.24, 1), (0.25, 2), (0.39, 2), (0.41, 3)])
def test_genant_grades(loss, grade):
    assert qc.genant_grade(loss) == grade


def test_fracture_grade_from_own_and_neighbour_heights():
    normal = {"anterior": 25.0, "middle": 24.0, "posterior": 25.0}
    wedge = {"anterior": 17.0, "middle": 22.0, "posterior": 25.0}  # 32% anterior loss
    assert qc.fracture_grade(normal)[0] == 0
    assert qc.fracture_grade(wedge)[:2] == (2, pytest.approx(0.32))
    crush = {"anterior": 17.5, "middle": 17.0, "posterior": 17.5}  # uniform: only neighbours tell
    assert qc.fracture_grade(crush)[0] == 0
    g, loss, how = qc.fracture_grade(crush, [normal, normal])
    # each height against the neighbours' at the same place: front 17.5 against 25
    assert (g, how) == (2, "neighbours") and loss == pytest.approx(0.30)
    assert qc.fracture_flags(wedge, 20)[0].startswith("fracture: L1 Genant grade 2")
    assert qc.fracture_flags(normal, 20, [normal]) == []


def test_a_plane_set_off_is_told_from_a_crush_by_the_neighbour_beyond():
    """A disc plane 4 mm too low takes 4 mm from this body and gives them to the one below: that one is
    then taller than its own neighbours by as much as this one lacks. A crush of 4 mm leaves the body
    below only half as far above its neighbours."""

    def body(h):
        return {"anterior": h, "middle": h, "posterior": h}

    # plane set off: above 22 | this 16 | below 25 | beyond 21 (the neighbours agree within 20%)
    assert qc.fracture_flags(body(16), 20, [body(22), body(25)], beyond=[body(22), body(21)])[0].startswith(
        "seg_suspect: L1"
    )
    # crush: above 22 | this 16 | below 22 | beyond 22
    crushed = qc.fracture_flags(body(16), 20, [body(22), body(22)], beyond=[body(22), body(22)])
    assert crushed[0].startswith("fracture: L1")


def test_thoracic_wedge_and_slice_thickness():
    """A mid-thoracic body 20% shorter in front is the kyphosis's normal wedge, not a grade 1 fracture; a
    35% wedge still is. A height loss smaller than the slice thickness cannot be measured at all."""
    t8, l1 = 15, 20
    physiological = {"anterior": 18.8, "middle": 21.0, "posterior": 23.6}
    assert qc.fracture_flags(physiological, t8) == []
    assert qc.fracture_flags(physiological, l1)[0].startswith("fracture: L1 Genant grade 1")
    fractured = {"anterior": 15.3, "middle": 20.0, "posterior": 23.6}
    assert qc.fracture_flags(fractured, t8)[0].startswith("fracture: T8 Genant grade 2")
    crush = {"anterior": 20.0, "middle": 20.0, "posterior": 20.0}
    normal = {"anterior": 25.0, "middle": 25.0, "posterior": 25.0}
    assert qc.fracture_flags(crush, l1, [normal, normal], resolution_mm=1.25)[0].startswith("fracture: L1")
    assert qc.fracture_flags(crush, l1, [normal, normal], resolution_mm=5.0) == []


def test_split_error_is_not_a_fracture():
    """A misplaced disc plane moves height into a neighbour; a tilted one wedges the neighbour the other
    way. Either way the level is flagged seg_suspect, not fracture; a real crush between two normal
    neighbours stays a fracture."""
    normal = {"anterior": 25.0, "middle": 25.0, "posterior": 25.0}
    short = {"anterior": 17.0, "middle": 17.0, "posterior": 17.0}
    tall = {"anterior": 33.0, "middle": 33.0, "posterior": 33.0}
    assert qc.fracture_flags(short, 20, [normal, normal])[0].startswith("fracture: L1")
    assert qc.fracture_flags(short, 20, [normal, tall])[0].startswith("seg_suspect: L1")
    assert qc.fracture_flags(short, 20, [tall])[0].startswith("seg_suspect: L1")
    wedge = {"anterior": 16.0, "middle": 21.0, "posterior": 25.0}
    mirrored = {"anterior": 27.0, "middle": 24.0, "posterior": 21.0}
    assert qc.fracture_flags(wedge, 20, [normal, normal])[0].startswith("fracture: L1")
    assert qc.fracture_flags(wedge, 20, [mirrored, normal])[0].startswith("seg_suspect: L1")
    # shortest at the back with the front preserved: no osteoporotic fracture does that (the posterior
    # wall holds), a plane tilted the wrong way does
    assert qc.fracture_flags({"anterior": 25.0, "middle": 22.0, "posterior": 17.0}, 20, [normal, normal])[0].startswith(
        "seg_suspect: L1"
    )
    crush = {"anterior": 17.6, "middle": 17.5, "posterior": 17.2}
    assert qc.fracture_flags(crush, 20, [normal, normal])[0].startswith("fracture: L1")


def test_heights_match_phantom_truth(fractured):
    seg = _seg(fractured)
    for lv in fractured.truth["levels"]:
        if lv["partial"]:
            continue
        h = qc.level_heights(seg, lv["label"], fractured.volume.spacing)
        for k in ("anterior", "middle", "posterior"):
            assert h[k] == pytest.approx(lv["heights_mm"][k], abs=2.5), (lv["level"], k, h)


def test_fractured_phantom_level_is_flagged_and_excluded(fractured):
    seg = _seg(fractured)
    flags = {lab: qc.level_flags(fractured.volume, seg, None, None, lab) for lab in seg.levels}
    assert any(f.startswith("fracture: L1 Genant grade") for f in flags[20])
    assert qc.excluding_reasons(flags[20])
    for lv in fractured.truth["levels"]:
        if not lv["partial"] and lv["label"] != 20:
            assert not [f for f in flags[lv["label"]] if qc.code(f) == "fracture"], lv["level"]


def test_metal_near_a_vertebra(fractured):
    seg = _seg(fractured)
    vol = fractured.volume
    mask = seg.vertebrae == 21
    assert qc.metal_flags(vol, mask, 21) == []
    arr = vol.array.copy()
    k, j, i = np.argwhere(mask).mean(axis=0).astype(int)
    arr[k - 2 : k + 2, j - 2 : j + 2, i + 12 : i + 15] = 3071  # a pedicle screw tip
    flags = qc.metal_flags(vol.with_array(arr), mask, 21)
    assert flags and flags[0].startswith("metal:") and "L2" in flags[0]
    assert qc.metal_flags(vol.with_array(arr), seg.vertebrae == 18, 18) == []  # T11 is far away


def test_dense_cortex_and_contrast_at_80_kvp_are_not_metal(phantoms):
    # cortical bone reads ~2500 HU at 80 kVp and an enhanced aorta is bright: neither is metal
    ph = phantoms(seed=5, kvp=80.0, contrast=True, hu_scale=1.04, **COARSE)
    assert ph.volume.array.max() > 2500  # the case the old 2500 HU threshold flagged
    seg = _seg(ph)
    for lab in np.unique(seg.vertebrae)[1:]:
        assert qc.metal_flags(ph.volume, seg.vertebrae == lab, int(lab)) == [], int(lab)


def test_metal_threshold_follows_the_scans_hu_scale(phantoms):
    """On a scanner whose HU scale reads 20% high (the segmenter's tissue peaks measure it) the 80 kVp
    cortex passes 3000 scan-HU: against a fixed threshold it would be metal, against the scan's own
    scale it is not."""
    ph = phantoms(seed=5, kvp=80.0, contrast=True, hu_scale=1.04, **COARSE)
    seg = _seg(ph)
    vol = ph.volume.with_array(1.2 * ph.volume.array.astype(np.float32) - 20)
    lab = int(np.unique(seg.vertebrae)[1])
    m = seg.vertebrae == lab
    assert qc.metal_flags(vol, m, lab)  # the fixed threshold is fooled
    assert qc.metal_flags(vol, m, lab, hu_scale=(1.2, -20.0)) == []


def test_streaks_from_metal_in_the_same_slices(fractured):
    seg = _seg(fractured)
    vol = fractured.volume
    mask = seg.vertebrae == 21
    ks = np.nonzero(mask.any(axis=(1, 2)))[0]
    arr = vol.array.astype(np.float32)
    # Metal far lateral in the same slices, and alternating dark/bright bands across the body.
    arr[ks, 100:104, 20:24] = 3071
    jj = np.arange(arr.shape[1])
    arr[ks] += np.where((jj // 2) % 2 == 0, 150.0, -150.0)[None, :, None] * (np.arange(arr.shape[2]) % 7 == 0)
    flags = qc.metal_flags(vol.with_array(arr.astype(np.int16)), mask, 21)
    assert flags and "streak" in flags[0]
    clean = vol.array.astype(np.float32)
    clean[ks, 100:104, 20:24] = 3071  # metal alone, no streaks: not flagged
    assert qc.metal_flags(vol.with_array(clean.astype(np.int16)), mask, 21) == []


def test_fov_cut():
    m = np.zeros((10, 20, 20), bool)
    m[3:6, 5:10, 5:10] = True
    assert qc.fov_flags(m, 19) == []
    m[7:, 5:10, 5:10] = True
    assert qc.fov_flags(m, 19) == ["fov_cut: T12 touches the top edge of the scan"]


def test_partial_phantom_level_is_cut_by_the_fov(phantoms):
    ph = phantoms(seed=4, **COARSE)
    partial = [lv["label"] for lv in ph.truth["levels"] if lv["partial"]]
    assert partial
    for lab in partial:
        assert qc.fov_flags(ph.vertebrae == lab, lab)


def test_roi_small():
    assert qc.roi_small_flags(5000.0, 20) == []
    assert qc.roi_small_flags(400.0, 20)[0].startswith("roi_small: L1 trabecular ROI 400 mm3")
    rois = SimpleNamespace(labelmap=np.zeros((10, 10, 10), np.int16), info={})
    rois.labelmap[4:6, 4:6, 4:6] = 20
    seg = SimpleNamespace(vertebrae=np.zeros((10, 10, 10), np.int16), bodies=None, levels=[20], info={})
    vol = Volume(np.zeros((10, 10, 10), np.int16), (1.0, 1.0, 1.0))
    assert [qc.code(f) for f in qc.level_flags(vol, seg, rois, None, 20)] == ["roi_small"]


@pytest.mark.parametrize("dose", ["standard", "ultralow"])
def test_noise_estimate_matches_phantom(phantoms, dose):
    ph = phantoms(seed=5, dose=dose, levels="T12-L1", matrix=256, spacing=(1.4, 1.4, 2.0))
    refs = calibration.calibrate(ph.volume, _seg(ph)).references
    sigma = qc.estimate_noise_sigma(ph.volume, refs)
    assert sigma == pytest.approx(ph.truth["noise_sigma_hu"], rel=0.3)
    assert qc.noise_flags(sigma) == []  # coarse voxels: even the ultralow dose stays under the threshold


def test_noise_flag():
    assert qc.noise_flags(12.0) == []
    assert qc.noise_flags(50.0)[0].startswith("noise: image noise 50 HU")
    refs = {
        "fat": {"sd_hu": 48.0, "n_voxels": 5000},
        "muscle": {"sd_hu": 55.0, "n_voxels": 3000},
        "air": {"sd_hu": 5.0, "n_voxels": 4000, "why": "found; air clipped at -1024 HU"},
    }
    assert qc.estimate_noise_sigma(None, refs) == 48.0  # the body's noise, not the quieter air
    assert qc.estimate_noise_sigma(None, {"air": {"sd_hu": 9.0, "n_voxels": 4000, "why": "found"}}) == 9.0
    assert qc.estimate_noise_sigma(None, {"air": refs["air"]}) is None  # clipped air is no measure


def test_calibration_and_implausible_flags():
    cal = Calibration(method="internal", qc=["contrast: aorta", "calib_fit: 20 HU RMS", "kvp_unknown: 120"])
    assert qc.calibration_flags(cal) == ["calib_fit: 20 HU RMS"]
    assert qc.implausible_flags(150.0) == []
    assert qc.implausible_flags(-12.0, 20)[0].startswith("implausible: L1 vBMD -12")
    assert qc.implausible_flags(400.0)


def test_contrast_flags_on_phantom(phantoms):
    for contrast in (False, True):
        ph = phantoms(seed=6, contrast=contrast, levels="T12-L1", matrix=256, spacing=(1.4, 1.4, 2.0))
        refs = calibration.calibrate(ph.volume, _seg(ph)).references
        flags = qc.contrast_flags(refs, ph.volume.meta["kvp"])
        assert bool(flags) == contrast
        assert all(f.startswith("contrast:") for f in flags)


def test_scan_flags_report_high_noise(phantoms):
    ph = phantoms(seed=7, dose="ultralow", levels="T12-L1", matrix=512, spacing=(0.7, 0.7, 1.0))
    cal = calibration.calibrate(ph.volume, _seg(ph))
    assert [qc.code(f) for f in qc.scan_flags(ph.volume, _seg(ph), cal)] == ["noise"]
