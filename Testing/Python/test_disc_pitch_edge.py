"""The disc chain's pitch prior (discs.find_discs) against a body depth misread in the scan's outermost
slices: under noise the depth read there halved on a 5 mm scan (cptac), and the smoothing, repeating
that value beyond the end, bent the pitch over the whole last vertebra and split it with a disc that is
not there. A real trend of the depth towards the edge must still count."""

from __future__ import annotations

import numpy as np
from OsteoAISegmentLib.discs import find_discs

WS = 1.0
PITCH = 28  # mm, lower thoracic: depth 28 mm gives about this pitch prior
NK, NJ, NI = 7 * PITCH, 60, 60
EDGE_MM = 10.0  # two 5 mm slices


def _spine(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prof = np.full(NK, 200.0)
    for c in range(PITCH // 2, NK, PITCH):
        prof[c - 3 : c + 3] = 60.0  # resolved 6 mm discs
    work = np.zeros((NK, NJ, NI), np.float32)
    jj, ii = np.ogrid[:NJ, :NI]
    work[:, (jj - 30) ** 2 + (ii - 30) ** 2 <= 15**2] = prof[:, None]
    return work + rng.normal(0, 25.0, work.shape).astype(np.float32)


def _discs(work, depth):
    """(disc indices, local pitch)"""
    pts = np.stack([np.arange(NK, dtype=float), np.full(NK, 30.0), np.full(NK, 30.0)], 1)
    found = find_discs(work, pts, WS, 8.0, depth, np.full(NK, 15.0), np.full(NK, 45.0), edge_mm=EDGE_MM)
    return found[0], found[2]


def test_a_depth_misread_in_the_outermost_slices_bends_neither_the_pitch_nor_the_discs():
    work = _spine(0)
    depth = np.full(NK, 28.0)
    misread = depth.copy()
    misread[:10] = np.linspace(14.0, 27.0, 10)  # the outer 10 mm read up to half too shallow
    (d0, p0), (d1, p1) = _discs(work, depth), _discs(work, misread)
    # repeated beyond the end by the smoothing, the misread put the pitch there at 18 instead of 27 mm
    assert np.allclose(p1[:60], p0[:60], rtol=0.01), (p1[:60:10], p0[:60:10])
    assert d1 == d0


def test_a_real_trend_towards_the_edge_still_sets_the_pitch_there():
    work = _spine(0)
    trend = np.full(NK, 28.0)
    trend[-40:] = np.linspace(28.0, 20.0, 40)  # smaller bodies towards the top of the scan
    _d, p = _discs(work, trend)
    _d, flat = _discs(work, np.full(NK, 28.0))
    assert p[-1] < 0.9 * flat[-1], (p[-1], flat[-1])
