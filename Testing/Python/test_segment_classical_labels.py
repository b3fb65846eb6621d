"""Level assignment from rib evidence (labelling.assign_levels), independent of image analysis."""

from __future__ import annotations

import pytest
from OsteoAILib import levels as lv
from OsteoAISegmentLib.labelling import assign_levels


def _names(ids):
    return [lv.name(i) if 1 <= i <= 28 else str(i) for i in ids]


def _case(n_above: int, n_ribs: int, n_below: int, free_edges: bool = True):
    """Vertebrae cranial -> caudal: rib-free ones above, rib-bearing ones, rib-free ones below."""
    has = [False] * n_above + [True] * n_ribs + [False] * n_below
    free = [not h for h in has]
    if not free_edges:
        free = [False] * len(has)
    return has, free


def test_whole_thorax_twelve_ribs():
    ids, anchor, qc = assign_levels(*_case(1, 12, 2))
    assert anchor == "last_rib=T12"
    assert _names(ids) == ["C7"] + [f"T{i}" for i in range(1, 13)] + ["L1", "L2"]
    assert not any(q.startswith("rib_count") for q in qc)


@pytest.mark.parametrize("pairs", [11, 13])
def test_eleven_or_thirteen_rib_pairs_are_flagged(pairs):
    ids, anchor, qc = assign_levels(*_case(1, pairs, 2))
    assert anchor == "last_rib=T12"
    assert lv.name(ids[pairs]) == "T12"  # the last rib-bearing vertebra is called T12 ...
    assert any(q == f"rib_count: {pairs} rib pairs found; labels may be shifted" for q in qc)  # ... and flagged


def test_thoracolumbar_scan_counts_from_last_rib():
    ids, anchor, qc = assign_levels(*_case(0, 3, 4))
    assert _names(ids) == ["T10", "T11", "T12", "L1", "L2", "L3", "L4"]
    assert not any(q.startswith("rib_count") for q in qc)  # thorax top not in view: no count


def test_chest_scan_counts_from_first_rib():
    has, free = _case(1, 9, 0)
    ids, anchor, qc = assign_levels(has, free)
    assert anchor == "first_rib=T1"
    assert _names(ids) == ["C7"] + [f"T{i}" for i in range(1, 10)]


def test_rib_end_out_of_view_is_uncertain():
    has, _ = _case(0, 4, 2)
    ids, anchor, qc = assign_levels(has, [False] * len(has))
    assert anchor == "lowest=T12" and lv.name(ids[-1]) == "T12"
    assert any(q.startswith("label_uncertain") for q in qc)


def test_no_ribs_gives_uncertain_lumbar_labels():
    ids, anchor, qc = assign_levels([False] * 3, [True] * 3)
    assert _names(ids) == ["L2", "L3", "L4"]
    assert any(q.startswith("label_uncertain") for q in qc)
    ids, _a, _q = assign_levels([False] * 5, [True] * 5)
    assert _names(ids) == ["L1", "L2", "L3", "L4", "L5"]
