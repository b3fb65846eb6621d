"""How the real-CT benchmark tells a renamed vertebra from a segment found in one run only
(Testing/benchmarks/real_ct.py: the invariance runs under a changed HU scale or added noise)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from real_ct import renamed

T11, T12, L1, L2 = 18, 19, 20, 21


def _column(names_per_slab: list[tuple[int, int]]) -> np.ndarray:
    """Bodies stacked along k: (VerSe id, slices)."""
    lab = np.zeros((sum(n for _v, n in names_per_slab), 4, 4), np.int16)
    k = 0
    for v, n in names_per_slab:
        lab[k : k + n] = v
        k += n
    return lab


def test_the_same_bodies_under_other_names_are_renamed():
    base = _column([(T11, 10), (T12, 10), (L1, 10)])
    shifted = _column([(T12, 10), (L1, 10), (L2, 10)])
    assert renamed(base, shifted) == ["T11->T12", "T12->L1", "L1->L2"]
    assert renamed(base, base) == []


def test_a_sliver_split_off_at_the_edge_renames_nothing():
    base = _column([(T11, 12), (T12, 10), (L1, 10)])  # T11 holds a 2-slice sliver of T10 at the top
    split = _column([(18 - 1, 2), (T11, 10), (T12, 10), (L1, 10)])
    assert renamed(base, split) == []


def test_two_bodies_merged_rename_one_and_a_moved_split_renames_all():
    base = _column([(T11, 10), (T12, 10), (L1, 10)])
    merged = _column([(T11, 20), (L1, 10)])
    assert renamed(base, merged) == ["T12->T11"]
    moved = _column([(3, 7), (4, 12), (5, 11)])  # a 40 mm slab named C3-C5 under noise, T11-T12 before
    assert renamed(_column([(T11, 15), (T12, 15)]), moved) == ["T11->C4", "T12->C5"]
