"""The disc chain's pitch prior (discs.find_discs) against a body depth misread at the scan's edge: a
body cut by the edge, or noise, can halve the depth read over a few slices there, which once bent the
pitch over the whole last vertebra and split it with a disc that is not there (cptac under noise)."""

from __future__ import annotations

import numpy as np
from OsteoAISegmentLib.discs import _running_median, find_discs

WS = 1.0
PITCH = 28  # mm, lower thoracic: depth 28 mm gives the same pitch prior
NK, NJ, NI = 7 * PITCH, 60, 60


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
    found = find_discs(work, pts, WS, 8.0, depth, np.full(NK, 15.0), np.full(NK, 45.0))
    return found[0], found[2]


def test_a_depth_misread_at_the_edge_bends_neither_the_pitch_nor_the_discs():
    work = _spine(0)
    depth = np.full(NK, 28.0)
    misread = depth.copy()
    misread[:12] = np.linspace(12.0, 26.0, 12)  # the last 12 mm read far too shallow
    (d0, p0), (d1, p1) = _discs(work, depth), _discs(work, misread)
    # the old trend (a Gaussian repeating the edge value) put the pitch there at 18 instead of 27 mm
    assert np.allclose(p1[:60], p0[:60], rtol=0.03), (p1[:60:10], p0[:60:10])
    assert d1 == d0


def test_the_running_median_holds_whole_windows_at_the_ends():
    x = np.full(40, 30.0)
    x[:6] = 15.0  # fewer than half a window
    x[20] = 60.0  # a single spike
    assert np.allclose(_running_median(x, 15), 30.0)
    assert np.allclose(_running_median(np.arange(5.0), 15), 2.0)  # shorter than a window: its median
