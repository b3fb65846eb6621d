"""Rib detection (labelling.find_ribs) on a synthetic work grid: a rib is bone with a cortex that runs
far from the spine; speckles of an enhanced organ tipped over the bone threshold by noise, and a
transverse process stretched by a few noisy voxels, are not."""

from __future__ import annotations

import numpy as np
from OsteoAISegmentLib.labelling import REACH_CUT_MM, RIB_CORE_HU, RIB_HU, find_ribs

WS = 2.0
NK, NJ, NI = 40, 120, 160
CJ, CI = 60, 80  # the canal's centre on every slice


def _grid() -> np.ndarray:
    return np.zeros((NK, NJ, NI), np.float32)  # soft tissue


def _bar(work, ks, d_mm, hu, j=(58, 61)):
    """A bone bar on the patient's left, slices ``ks``, from d_mm[0] to d_mm[1] lateral of the canal."""
    i0, i1 = CI + int(d_mm[0] / WS), CI + int(d_mm[1] / WS)
    work[ks[0] : ks[1], j[0] : j[1], i0 : i1 + 1] = hu


def _ribs(work):
    return find_ribs(work, np.tile([float(CJ), float(CI)], (NK, 1)), 0, WS)


def test_a_rib_running_far_from_the_spine_is_found():
    work = _grid()
    _bar(work, (20, 23), (20, 110), 500.0)
    ribs = _ribs(work)
    assert len(ribs) == 1 and ribs[0]["side"] == "left"
    assert ribs[0]["reach_mm"] >= 100 and ribs[0]["core_hu"] >= 500


def test_noise_speckles_of_an_enhanced_organ_are_no_rib():
    # cut by the scan's edge, reaching past REACH_CUT_MM: a rib's shape, but no cortex in it
    work = _grid()
    _bar(work, (0, 3), (40, REACH_CUT_MM + 6), RIB_HU + 10)
    assert RIB_HU + 10 < RIB_CORE_HU
    assert _ribs(work) == []
    _bar(work, (0, 3), (40, REACH_CUT_MM + 6), 400.0)  # the same shape with a cortex is a (cut) rib
    assert len(_ribs(work)) == 1


def test_a_transverse_process_stretched_by_a_few_noisy_voxels_is_no_rib():
    work = _grid()
    _bar(work, (0, 3), (40, 56), 400.0)  # a transverse process cut by the scan's edge
    for d in (58, 60, 62):  # a line of single voxels tipped over the threshold, past REACH_CUT_MM
        work[1, 59, CI + int(d / WS)] = RIB_HU + 5
    assert _ribs(work) == []
