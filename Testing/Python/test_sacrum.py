"""The sacrum detector (labelling.sacral_segments) on a synthetic work grid: a body joined by its alae to
the iliac bones is the sacrum; a lumbar body with transverse processes beside iliac wings that the
psoas keeps apart is not. And a sacrum seen below an agreeing last rib makes the names certain."""

from __future__ import annotations

import numpy as np
from OsteoAISegmentLib.labelling import sacral_segments

WS = 2.0
NK, NJ, NI = 30, 100, 160
CJ, CI = 50, 80  # body centre


def _grid():
    work = np.zeros((NK, NJ, NI), np.float32)  # soft tissue
    body = np.zeros((NK, NJ, NI), np.int16)
    return work, body


def _vertebra(work, body, ks, index):
    """A body 40 mm wide and 30 mm deep with a canal and transverse processes reaching 45 mm."""
    jj, ii = np.ogrid[:NJ, :NI]
    disc = ((jj - CJ) / 7.5) ** 2 + ((ii - CI) / 10.0) ** 2 <= 1.0
    for k in range(*ks):
        work[k][disc] = 250.0
        body[k][disc] = index
        work[k, CJ + 9 : CJ + 12, CI - int(45 / WS) : CI + int(45 / WS) + 1] = 400.0  # transverse processes


def _ilium(work, ks, d0_mm, d1_mm):
    for k in range(*ks):
        for side in (1, -1):
            a, b = sorted((CI + side * int(d0_mm / WS), CI + side * int(d1_mm / WS)))
            work[k, CJ - 5 : CJ + 12, a : b + 1] = 400.0


def test_a_body_joined_to_the_pelvis_is_the_sacrum():
    work, body = _grid()
    _vertebra(work, body, (18, 28), 2)  # L5
    _ilium(work, (18, 28), 70, 130)  # iliac wings beside it, 25 mm of psoas between
    _vertebra(work, body, (4, 14), 1)  # S1
    for k in range(4, 14):  # alae out to the sacroiliac joints at 55 mm, a 2 mm cleft, the ilium beyond
        for side in (1, -1):
            a, b = sorted((CI + side * 10, CI + side * int(55 / WS)))
            work[k, CJ - 3 : CJ + 8, a : b + 1] = 300.0
    _ilium(work, (4, 14), 58, 130)
    assert sacral_segments(work, body, [2, 1], WS) == [1]


def test_a_lumbar_vertebra_beside_the_iliac_crest_is_not():
    work, body = _grid()
    _vertebra(work, body, (4, 14), 1)
    _ilium(work, (4, 14), 70, 130)
    assert sacral_segments(work, body, [1], WS) == []
