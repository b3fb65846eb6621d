"""How discs read (discs.find_discs polarity) on a synthetic spine sampled 1 mm: a disc blurred with its
sclerotic endplates into one bright band reads "bright", under noise too; a resolved disc between two thin
bright endplates reads "dark" (each endplate is brighter than the body, but the disc is the band)."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAISegmentLib.discs import find_discs

WS = 1.0
PITCH = 24  # mm, mid-thoracic
NK, NJ, NI = 8 * PITCH, 60, 60


def _spine(profile, noise_sd: float, seed: int) -> np.ndarray:
    """A body cylinder (radius 15 mm) whose density along k follows ``profile``, in soft tissue."""
    rng = np.random.default_rng(seed)
    work = np.zeros((NK, NJ, NI), np.float32)
    jj, ii = np.ogrid[:NJ, :NI]
    disc = (jj - 30) ** 2 + (ii - 30) ** 2 <= 15**2
    work[:, disc] = np.asarray(profile, np.float32)[:, None]
    return work + rng.normal(0, noise_sd, work.shape).astype(np.float32)


def _find(work):
    pts = np.stack([np.arange(NK, dtype=float), np.full(NK, 30.0), np.full(NK, 30.0)], 1)
    ant, post = np.full(NK, 15.0), np.full(NK, 45.0)
    return find_discs(work, pts, WS, 8.0, np.full(NK, 28.0), ant, post)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_disc_blurred_with_its_endplates_reads_bright_under_noise(seed):
    prof = np.full(NK, 200.0)
    for c in range(PITCH // 2, NK, PITCH):
        prof[c - 2 : c + 3] = 330.0  # disc and endplates averaged over a 5 mm band
    idx, _s, _p, polarity = _find(_spine(prof, 25.0, seed))
    assert polarity == "bright"
    centres = np.arange(PITCH // 2, NK, PITCH)
    inner = [i for i in idx if 8 <= i <= NK - 8]
    assert len(inner) >= 6 and all(np.min(np.abs(centres - i)) <= 3 for i in inner), idx


def test_a_resolved_disc_between_thin_endplates_reads_dark():
    prof = np.full(NK, 200.0)
    for c in range(PITCH // 2, NK, PITCH):
        prof[c - 2 : c + 2] = 60.0  # the disc, 4 mm
        prof[c - 3], prof[c + 2] = 450.0, 450.0  # sclerotic endplates, 1 mm each
    idx, _s, _p, polarity = _find(_spine(prof, 10.0, 0))
    assert polarity == "dark"
    centres = np.arange(PITCH // 2, NK, PITCH)
    inner = [i for i in idx if 8 <= i <= NK - 8]
    assert len(inner) >= 6 and all(np.min(np.abs(centres - i)) <= 3 for i in inner), idx
