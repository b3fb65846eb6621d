"""evaluate-segmenter metrics against constructed truth."""

from __future__ import annotations

import argparse

import numpy as np
from OsteoAILib.segmenter_training import evaluate as ev


def _truth():
    t = np.zeros((60, 20, 20), np.int16)
    t[0:12, 5:15, 5:15] = 21  # L2, touches the bottom face: partial
    t[15:27, 5:15, 5:15] = 20  # L1
    t[30:42, 5:15, 5:15] = 19  # T12
    return t


def test_perfect_prediction_scores_one():
    t = _truth()
    rows = ev.score_case(t.copy(), t, (1.0, 1.0, 2.0))
    by = {r["level"]: r for r in rows}
    assert all(r["dice"] == 1.0 and r["identified"] for r in rows)
    assert not by["L2"]["fully_in_view"] and by["L1"]["fully_in_view"] and by["T12"]["fully_in_view"]
    s = ev.summarise(rows)
    assert s["fully_in_view"] == {"n": 2, "mean_dice": 1.0, "identification": 1.0}


def test_labels_shifted_by_one_level_are_not_identified():
    t = _truth()
    pred = np.where(t > 0, t + 1, 0).astype(np.int16)  # every vertebra named one level too caudal
    rows = ev.score_case(pred, t, (1.0, 1.0, 2.0))
    by = {r["level"]: r for r in rows}
    # "L1" is predicted on the true T12 (30 mm away): neither close enough nor nearest
    assert not by["L1"]["identified"] and by["L1"]["dice"] == 0.0
    assert by["L1"]["centroid_err_mm"] == 30.0


def test_small_offset_within_20mm_still_identified():
    t = _truth()
    pred = np.roll(t, 3, axis=0)  # 6 mm cranial shift
    rows = ev.score_case(pred, t, (1.0, 1.0, 2.0))
    assert all(r["identified"] for r in rows if r["fully_in_view"])
    assert all(0.0 < r["dice"] < 1.0 for r in rows if r["fully_in_view"])


def test_cli_parses_and_rejects_unknown_segmenter():
    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    args = p.parse_args(["--segmenters", "model,bogus", "--phantom-seeds", "", "--data", "none"])
    import pytest
    from OsteoAIBaseLib.errors import InputError

    with pytest.raises(InputError, match="bogus"):
        ev.main(args)
