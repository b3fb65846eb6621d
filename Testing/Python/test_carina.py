"""The carina detector (carina.find_carina) on synthetic chests: a trachea that splits into two main
bronchi between two lungs, an air-filled oesophagus behind the trachea, and a scan without a split."""

from __future__ import annotations

import numpy as np
from OsteoAISegmentLib.carina import find_carina

WS = 2.0
NK, NJ, NI = 80, 160, 200
CANAL = (120.0, 100.0)  # (j, i) of the canal centre on every slice


def _disc(sl, j, i, r_mm, value):
    jj, ii = np.ogrid[: sl.shape[0], : sl.shape[1]]
    sl[(jj - j) ** 2 + (ii - i) ** 2 <= (r_mm / WS) ** 2] = value


def _chest(split_k: int | None, oesophagus: bool = False) -> np.ndarray:
    """Nominal-HU work grid: soft tissue body, two lungs from k=10 up, a trachea 60 mm in front of the
    canal down to ``split_k``, below it two bronchi 12 mm either side of the midline."""
    work = np.full((NK, NJ, NI), -1000.0, np.float32)
    for k in range(NK):
        sl = work[k]
        sl[10:150, 10:190] = 40.0  # the body, air all round it
        if k >= 10:
            sl[40:140, 20:80] = -850.0  # right lung
            sl[40:140, 120:180] = -850.0  # left lung
        j = CANAL[0] - 60.0 / WS
        if split_k is None or k >= split_k:
            _disc(sl, j, CANAL[1], 9.0, -1000.0)
        elif k >= split_k - 15:
            for side in (-1, 1):
                _disc(sl, j + 2, CANAL[1] + side * 12.0 / WS, 6.0, -1000.0)
        if oesophagus:
            _disc(sl, j + 15.0 / WS, CANAL[1] + 1, 5.0, -1000.0)  # behind the trachea, near the midline
    return work


def _canal():
    return np.tile(np.array(CANAL), (NK, 1))


def test_finds_the_split_of_the_trachea():
    c = find_carina(_chest(split_k=40), _canal(), 0, WS)
    assert c is not None
    assert abs(c["k"] - 39) <= 1, c
    assert c["trachea_mm"] >= 20


def test_an_air_filled_oesophagus_behind_the_trachea_is_no_split():
    c = find_carina(_chest(split_k=40, oesophagus=True), _canal(), 0, WS)
    assert c is not None and abs(c["k"] - 39) <= 1, c


def test_no_split_in_view_gives_no_carina():
    assert find_carina(_chest(split_k=None), _canal(), 0, WS) is None


def test_a_trachea_entering_through_the_top_edge_is_followed_over_a_short_stretch():
    # a chest CT that starts 10 mm above the carina (the readers' PET-CT starts 6-14 mm above it)
    c = find_carina(_chest(split_k=NK - 5), _canal(), 0, WS)
    assert c is not None and abs(c["k"] - (NK - 6)) <= 1, c
    assert c["trachea_mm"] < 20


def test_a_scan_starting_below_the_carina_gives_no_carina():
    # the two main bronchi at the top edge: neither may pass for a short trachea
    assert find_carina(_chest(split_k=NK + 10), _canal(), 0, WS) is None


def test_a_short_air_pocket_that_does_not_come_from_the_top_edge_is_no_trachea():
    work = _chest(split_k=40)
    j = CANAL[0] - 60.0 / WS
    for k in range(45, NK):
        _disc(work[k], j, CANAL[1], 9.0, 40.0)  # the trachea seen only 10 mm above the split
    assert find_carina(work, _canal(), 0, WS) is None


def test_lungs_cut_by_a_tight_field_of_view_still_count_as_lungs():
    # a CT-angiogram crop: no air around the patient, the lungs run out of the image at both sides
    work = _chest(split_k=40)
    work[:, :, :20] = np.where(work[:, :, 20:21] < -500, -850.0, 40.0)
    work[:, :, 180:] = np.where(work[:, :, 179:180] < -500, -850.0, 40.0)
    work[:, :, 20:80] = np.where(work[:, :, 20:80] == -1000.0, 40.0, work[:, :, 20:80])  # no air outside
    work[:, :10], work[:, 150:] = 40.0, 40.0
    c = find_carina(work, _canal(), 0, WS)
    assert c is not None and abs(c["k"] - 39) <= 1, c


def test_a_main_bronchus_merged_with_its_lung_right_below_the_split_is_waited_for():
    # on 1.5-2 mm slices the right main bronchus can open into the hilum by partial volume for a few
    # mm: only the left one is a closed pocket there, off the trachea's line
    work = _chest(split_k=40)
    j = CANAL[0] - 60.0 / WS
    for k in range(36, 40):
        _disc(work[k], j + 2, CANAL[1] - 12.0 / WS, 6.0, 40.0)
        work[k, int(j) - 1 : int(j) + 5, 35 : int(CANAL[1] - 12.0 / WS)] = -850.0  # joined to the right lung
    c = find_carina(work, _canal(), 0, WS)
    assert c is not None and abs(c["k"] - 39) <= 1, c


def test_bowel_gas_over_a_foam_table_is_no_split_between_lungs():
    # an abdomen: a gas-filled loop splitting in two in front of the spine, more gas either side
    # (-1000 HU, no lung texture) and the table's foam (-900 HU) wide behind the patient
    work = _chest(split_k=40)
    for k in range(NK):
        sl = work[k]
        sl[40:140, 20:80] = np.where(sl[40:140, 20:80] == -850.0, 40.0, sl[40:140, 20:80])
        sl[40:140, 120:180] = np.where(sl[40:140, 120:180] == -850.0, 40.0, sl[40:140, 120:180])
        sl[55:85, 25:70] = -1000.0  # gas in the colon, right and left
        sl[55:85, 130:175] = -1000.0
        sl[148:160, 2:198] = 100.0  # the table top
        sl[150:159, 5:195] = -900.0  # its foam, under the body
    assert find_carina(work, _canal(), 0, WS) is None
