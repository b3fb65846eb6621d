"""Vertebra model: weight integrity checks, labelling post-processing, and the model on a phantom."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from OsteoAISegmentLib.ai import inference
from OsteoAISegmentLib.ai.labels import BODY, LEVELS, N_LEVELS, POSTERIOR, RIB, totalseg_to_verse
from OsteoAISegmentLib.ai.postprocess import label_vertebrae


def test_totalseg_ids_map_to_verse():
    ts = np.array([27, 31, 32, 43, 44, 25, 92, 0])
    assert totalseg_to_verse(ts).tolist() == [24, 20, 19, 8, 7, 26, 0, 0]


def test_missing_or_altered_weights_fail_clearly(tmp_path, monkeypatch):
    src = inference.model_dir()
    if not (src / "model.json").exists():
        pytest.skip("model not installed")
    d = tmp_path / "vertebra-seg"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("cv"))
    monkeypatch.setenv("OSTEOAI_MODELS", str(tmp_path))
    assert inference.model_available()
    w = d / "model.pt"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    assert not inference.model_available()
    with pytest.raises(inference.ModelUnavailable, match="altered"):
        inference.check_weights()
    w.unlink()
    with pytest.raises(inference.ModelUnavailable, match="missing"):
        inference.check_weights()


def _column(n=6, first="T9", ribs_on=None, vote_shift=0):
    """Synthetic coarse (2 mm) prediction: n stacked vertebrae (body + posterior) separated by 4 mm
    discs, level votes pointing at ``first`` + i (+ vote_shift), ribs on the given instances."""
    from OsteoAIBaseLib import levels as lv

    h, gap = 12, 2  # voxels: 24 mm vertebra, 4 mm disc
    K = n * (h + gap) + 10
    sem = np.zeros((K, 60, 80), np.uint8)
    prob = np.full((N_LEVELS, *sem.shape), 0.01, np.float32)
    start = LEVELS.index(lv.label(first)) + vote_shift
    for r in range(n):  # r = 0 is the cranial-most
        k1 = K - 5 - r * (h + gap)
        k0 = k1 - h
        sem[k0:k1, 15:30, 30:50] = BODY
        sem[k0:k1, 30:45, 37:43] = POSTERIOR
        c = start + r
        if 0 <= c < N_LEVELS:
            prob[c, k0:k1] = 0.9
        if ribs_on and r in ribs_on:
            sem[k0 + 4 : k0 + 8, 30:34, 10:30] = RIB  # right rib touching the posterior elements? no: the body side
            sem[k0 + 4 : k0 + 8, 30:34, 50:70] = RIB
            sem[k0 + 4 : k0 + 8, 30:34, 30:37] = RIB
            sem[k0 + 4 : k0 + 8, 30:34, 43:50] = RIB
    return sem, prob


def test_levels_follow_the_votes_in_anatomical_order():
    sem, prob = _column(6, "T9")
    res = label_vertebrae(sem, prob, 2.0)
    assert res["levels"] == [16, 17, 18, 19, 20, 21]  # T9 ... L2, cranial -> caudal
    ks = [np.argwhere(res["vertebrae"] == v)[:, 0].mean() for v in res["levels"]]
    assert all(a > b for a, b in zip(ks, ks[1:], strict=False))  # cranial has the larger k


def test_last_rib_anchors_t12_against_shifted_votes():
    # votes one level too cranial (T8..L1) but ribs on the first four vertebrae: the last rib-bearing
    # one is T12, so the column is T9..L2
    sem, prob = _column(6, "T9", ribs_on={0, 1, 2, 3}, vote_shift=-1)
    res = label_vertebrae(sem, prob, 2.0)
    assert res["levels"] == [16, 17, 18, 19, 20, 21]
    assert res["rib_pairs"] == 4


def test_no_spine_reports_it():
    sem = np.zeros((20, 20, 20), np.uint8)
    res = label_vertebrae(sem, np.full((N_LEVELS, 20, 20, 20), 1.0 / N_LEVELS, np.float32), 2.0)
    assert res["levels"] == [] and res["qc"][0].startswith("no_spine")


def test_model_on_a_small_phantom(phantoms):
    """The shipped model on a held-back phantom seed (coarse grid to stay fast): Dice and
    identification against the phantom's own labels."""
    if not inference.model_available():
        pytest.skip("model not installed")
    from OsteoAILib.segmenter_training.evaluate import score_case, summarise

    ph = phantoms(seed=1001, levels="T9-L3", matrix=220, spacing=(1.6, 1.6, 2.0))
    seg = inference.segment_with_model(ph.volume)
    s = summarise(score_case(seg.vertebrae, ph.vertebrae, ph.volume.spacing))["fully_in_view"]
    assert s["n"] >= 5
    assert s["mean_dice"] >= 0.6
    assert s["identification"] >= 0.6
    assert seg.segmenter.startswith("model@")
    assert seg.vertebrae.shape == ph.volume.shape and seg.vertebrae.dtype == np.int16
    assert set(np.unique(seg.bodies)) <= set(np.unique(seg.vertebrae))


def test_totalsegmentator_absent_says_so(monkeypatch, tmp_path):
    from OsteoAIBaseLib.errors import InputError
    from OsteoAIBaseLib.volume import Volume
    from OsteoAISegmentLib import totalseg

    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path))  # no weights there
    assert not totalseg.totalsegmentator_available()
    with pytest.raises(InputError, match="TotalSegmentator"):
        totalseg.segment_with_totalsegmentator(Volume(np.zeros((4, 4, 4), np.int16)))


def test_totalsegmentator_bodies_are_the_anterior_part():
    from OsteoAISegmentLib import totalseg

    v = np.zeros((5, 20, 6), np.int16)
    v[:, 0:20, :] = 20
    b = totalseg.approximate_bodies(v)
    assert (b[:, :9] == 20).all() and (b[:, 9:] == 0).all()
