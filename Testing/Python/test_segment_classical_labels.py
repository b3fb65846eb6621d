"""Level naming as one global decision over the anchors (naming.name_segments), independent of image
analysis: whole rib cages, 11 and 13 rib pairs, a transitional lumbosacral junction, an upper-chest
field of view, no anchor at all."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAIBaseLib import levels as lv
from OsteoAISegmentLib.naming import BODY_CM3, ORDINAL, RibEvidence, SegmentEvidence, name_segments


def _scan(top: str, n: int, ribbed: set[int], top_cut=False, bottom_cut=False, sacrum_below=None):
    """Segments cranial -> caudal from level ``top``; ``ribbed``: segment indices carrying a rib pair.
    Volumes follow the typical trend; each rib crosses its own segment's slab at its middle."""
    o0 = ORDINAL.index(lv.label(top))
    ev = []
    for i in range(n):
        cut = (top_cut and i == 0) or (bottom_cut and i == n - 1)
        ev.append(
            SegmentEvidence(
                assessable=not cut,
                volume_cm3=None if cut else float(BODY_CM3[min(o0 + i, 23)]),
                sacrum_below=sacrum_below == i,
            )
        )
    ribs = [RibEvidence(side, 0.55 + np.arange(n) - i) for i in sorted(ribbed) for side in ("left", "right")]
    return ev, ribs


def _names(naming):
    return [lv.NAMES.get(v, "S") for v in naming.ids]


def _uncertain(naming):
    return [q for q in naming.qc if q.startswith("label_uncertain")]


def test_whole_rib_cage_is_named_with_confidence():
    ev, ribs = _scan("C7", 15, set(range(1, 13)))
    n = name_segments(ev, ribs)
    assert _names(n) == ["C7"] + [f"T{i}" for i in range(1, 13)] + ["L1", "L2"]
    assert not _uncertain(n) and n.margin > 6
    assert "first rib at T1" in n.anchor and "last rib at T12" in n.anchor


@pytest.mark.parametrize("pairs", [11, 13])
def test_eleven_or_thirteen_rib_pairs_are_flagged(pairs):
    ev, ribs = _scan("C7", pairs + 3, set(range(1, pairs + 1)))
    n = name_segments(ev, ribs)
    flags = _uncertain(n)
    assert any(f"ribs on {pairs} vertebrae" in q for q in flags)
    # the names follow one of the two anchors, never a third reading
    by_first = ["C7"] + [lv.NAMES[8 + i] for i in range(pairs + 2)]
    by_last = [lv.NAMES[ORDINAL[ORDINAL.index(19) - pairs + i]] for i in range(pairs + 3)]
    assert _names(n) in (by_first, by_last)


def test_thoracolumbar_scan_names_from_the_last_rib():
    ev, ribs = _scan("T10", 7, {0, 1, 2}, top_cut=False)
    n = name_segments(ev, ribs)
    assert _names(n) == ["T10", "T11", "T12", "L1", "L2", "L3", "L4"]
    assert n.anchor == "last rib at T12"


def test_transitional_lumbosacral_junction_is_flagged():
    """Six rib-free lumbar-type vertebrae between the last rib and the sacrum (a lumbarised S1): the last
    rib and the sacrum disagree by one level, and the naming says so."""
    ev, ribs = _scan("T11", 8, {0, 1}, sacrum_below=7)
    n = name_segments(ev, ribs)
    assert _uncertain(n), n.qc
    # whichever anchor wins, the names are at most one level from the last-rib reading
    assert _names(n)[:2] in (["T10", "T11"], ["T11", "T12"], ["T12", "L1"])


def test_upper_chest_scan_names_from_the_first_rib_not_from_an_assumed_t12():
    ev, ribs = _scan("C6", 8, set(range(2, 8)), top_cut=True, bottom_cut=True)
    n = name_segments(ev, ribs)
    assert _names(n) == ["C6", "C7", "T1", "T2", "T3", "T4", "T5", "T6"]
    assert n.anchor == "first rib at T1"


def test_mid_thorax_without_anchor_is_uncertain():
    ev, ribs = _scan("T4", 6, set(range(6)), top_cut=True, bottom_cut=True)
    n = name_segments(ev, ribs)
    assert any("no anchor in view" in q for q in _uncertain(n))


def test_no_ribs_is_uncertain():
    ev, ribs = _scan("L1", 5, set())
    n = name_segments(ev, ribs)
    assert _uncertain(n)
    assert all(lv.NAMES.get(v, "S")[0] in "LTS" for v in n.ids)


def test_rib_crossing_above_its_vertebra_still_counts_for_it():
    """In a kyphotic upper thorax a rib tubercle lies up to ~20 mm above its vertebra (slab height ~1.1):
    the ribs are counted in order, so the naming does not shift."""
    ev, ribs = _scan("C7", 15, set(range(1, 13)))
    for r in ribs:
        r.t = r.t + 0.5
    assert _names(name_segments(ev, ribs))[:3] == ["C7", "T1", "T2"]


def _carina_at(level_above: str, n: int, top: str) -> np.ndarray:
    """Carina heights in each segment's slab: on the disc below ``level_above`` (segments from ``top``)."""
    i = ORDINAL.index(lv.label(level_above)) - ORDINAL.index(lv.label(top))
    return np.arange(n, dtype=float) - i  # 0 at the lower disc plane of segment i


def test_carina_names_a_mid_thorax_scan_without_rib_ends_but_stays_uncertain():
    """No first or last rib in view and bodies of equal size: the carina at the T4/T5 disc picks the naming,
    which is still only a weak anchor (a level either way is common): label_uncertain stays."""
    ev, ribs = _scan("T4", 8, set(range(8)), top_cut=True, bottom_cut=True)
    for e in ev:
        e.volume_cm3 = 12.0 if e.volume_cm3 else None
    n = name_segments(ev, ribs, _carina_at("T4", 8, "T4"))
    assert _names(n)[0] in ("T4", "T5"), _names(n)
    assert any("from the carina and body size" in q for q in _uncertain(n))
    assert n.anchor == "carina+size_prior"


def test_carina_does_not_override_the_rib_count():
    """A carina a level and a half off its usual place (it varies with breathing) leaves a naming
    anchored by the first rib as it is."""
    ev, ribs = _scan("C6", 10, set(range(2, 10)), top_cut=True, bottom_cut=True)
    n = name_segments(ev, ribs, _carina_at("T6", 10, "C6") - 0.5)
    assert _names(n) == ["C6", "C7", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"]
    assert n.anchor == "first rib at T1"
