"""The tracheal bifurcation (carina): a weak level anchor for chest CT that shows no end of the rib cage.

In axial slices the trachea is a round pocket of air in front of the spine, closed all round by
mediastinal tissue (the lungs beside it are far larger and lateral). Followed down from the top of
the scan it splits into the two main bronchi: the carina is the first slice where two such
pockets, one on each side of the trachea's line, take its place. It lies near the T4/T5 disc in
most adults, a level higher or lower with posture, breathing and age (``naming.py`` weighs it
that loosely). Pure numpy on the nominal-HU work grid, so the HU scale does not move it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

AIR_HU = -600.0  # airway lumen (about -1000) against its wall and the mediastinum (>= -100)
TRACHEA_AREA_MM2 = (80.0, 900.0)  # 10-34 mm lumen; a collapsed or sabre-sheath trachea is still > 80
BRONCHUS_AREA_MM2 = (25.0, 700.0)
MIN_TRACHEA_MM = 20.0  # the trachea must be followed this far above the split to be trusted
# ...unless it enters through the top of the scan near the midline, as one pocket, where a chest
# CT that starts just above the carina cannot show more of it. Scans starting below the carina
# show two main bronchi at the top, each 15 mm or more off the midline, so none passes this.
MIN_TRACHEA_AT_EDGE_MM = 8.0
EDGE_MIDLINE_MM = 12.0
FRONT_MM = (25.0, 120.0)  # in front of the canal centre
SIDE_MM = 40.0  # from the canal's midline
STEP_MM = 8.0  # most the trachea's centre moves from one 2 mm slice to the next
BRONCHI_APART_MM = 10.0  # centre to centre: the main bronchi leave at ~70 degrees to each other
LUNG_MM2 = 2500.0  # each lung's cross-section at the carina is several times this
# Right at the split one main bronchus can merge with its hilum by partial volume for a few mm,
# so it is no closed pocket there: the trachea's last point is kept this far below where it was
# last seen, while the two bronchi are looked for around it.
SPLIT_GAP_MM = 8.0
# Lung parenchyma, air with its vessels and septa, has a median of -700 to -930 HU even in
# emphysema; the air around the patient, in the bowel or in the table reads -1000. Told apart by
# this, not by touching the image edge: a scan cropped tight to the chest cuts the lungs there.
LUNG_MEDIAN_HU = -960.0
LUNG_BAND_MM = 40.0  # lungs are counted this far in front of and behind the trachea


def _pockets(sl: np.ndarray, lo: tuple[int, int], ws: float) -> list[tuple[float, float, float]]:
    """(j, i, area mm2) of air pockets closed all round in a window of one axial slice whose corner
    is ``lo``: a pocket touching the window's edge is a lung (or the air outside the body)."""
    lab, n = ndi.label(sl < AIR_HU)
    if n == 0:
        return []
    area = ndi.sum_labels(np.ones_like(lab), lab, np.arange(1, n + 1)) * ws * ws
    keep = np.nonzero((area >= BRONCHUS_AREA_MM2[0]) & (area <= TRACHEA_AREA_MM2[1]))[0] + 1
    if len(keep) == 0:
        return []
    com = ndi.center_of_mass(np.ones_like(lab), lab, keep)
    edge = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])))
    return [(c[0] + lo[0], c[1] + lo[1], float(area[q - 1])) for q, c in zip(keep, com, strict=True) if q not in edge]


def find_carina(work: np.ndarray, canal_ji: np.ndarray, k0: int, ws: float) -> dict | None:
    """The carina as {"k": work slice, "trachea_mm": length followed above it}, or None when the scan
    does not show a trachea splitting in two (it starts below the carina, or ends above it)."""
    nk = work.shape[0]
    track: list[tuple[int, float, float]] = []  # (k, j, i) of the trachea, from the top down
    lost = None  # first slice where the trachea was not seen as one pocket
    for k in range(nk - 1, -1, -1):
        r = int(np.clip(k - k0, 0, len(canal_ji) - 1))
        cj, ci = canal_ji[r]
        # the window in front of the spine where the trachea and the main bronchi run
        j0, j1 = int(max(cj - (FRONT_MM[1] + 40) / ws, 0)), int(max(cj - (FRONT_MM[0] - 20) / ws, 1))
        i0, i1 = int(max(ci - (SIDE_MM + 60) / ws, 0)), int(ci + (SIDE_MM + 60) / ws) + 1
        cand = [
            (j, i, a)
            for j, i, a in _pockets(work[k, j0:j1, i0:i1], (j0, i0), ws)
            if FRONT_MM[0] <= (cj - j) * ws <= FRONT_MM[1] and abs(i - ci) * ws <= SIDE_MM + 20
        ]
        if track:
            _k, tj, ti = track[-1]
            near = [c for c in cand if np.hypot(c[0] - tj, c[1] - ti) * ws <= 30.0]
            one = [c for c in near if np.hypot(c[0] - tj, c[1] - ti) * ws <= STEP_MM and c[2] >= TRACHEA_AREA_MM2[0]]
            if _long_enough(track, nk, ci, ws) and _bronchi(near, ti, ws) and _between_lungs(work[k], tj, ti, ws):
                split = k if lost is None else lost
                return {"k": split, "trachea_mm": len(track) * ws, "kji": [float(split), float(tj), float(ti)]}
            if one and lost is None:
                j, i, _a = max(one, key=lambda c: c[2])
                track.append((k, j, i))
                continue
            lost = k if lost is None else lost
            if (lost - k + 1) * ws <= SPLIT_GAP_MM:
                continue
            track, lost = [], None  # lost it: start again lower down
        mid = [c for c in cand if abs(c[1] - ci) * ws <= SIDE_MM and c[2] >= TRACHEA_AREA_MM2[0]]
        if k == nk - 1 and len(mid) != 1:
            mid = []  # two pockets at the top edge: the scan may start below the carina
        if mid:
            j, i, _a = max(mid, key=lambda c: c[2])
            track.append((k, j, i))
    return None


def _long_enough(track: list[tuple[int, float, float]], nk: int, ci: float, ws: float) -> bool:
    """The trachea followed far enough above the split to be trusted (see MIN_TRACHEA_AT_EDGE_MM)."""
    length = len(track) * ws
    if length >= MIN_TRACHEA_MM:
        return True
    from_top = track[0][0] == nk - 1
    central = all(abs(i - ci) * ws <= EDGE_MIDLINE_MM for _k, _j, i in track)
    return from_top and central and length >= MIN_TRACHEA_AT_EDGE_MM


def _between_lungs(sl: np.ndarray, tj: float, ti: float, ws: float) -> bool:
    """Both lungs wide open beside the split (not the larynx, whose side pockets have no lung beside
    them), counted at the trachea's depth: the foam of the table lies far behind the patient."""
    lab, n = ndi.label(sl < AIR_HU)
    if n == 0:
        return False
    median = np.atleast_1d(ndi.median(sl, lab, np.arange(1, n + 1)))
    air = np.isin(lab, np.nonzero(median >= LUNG_MEDIAN_HU)[0] + 1)  # lung, not empty air
    band = int(round(LUNG_BAND_MM / ws))
    air = air[max(int(round(tj)) - band, 0) : int(round(tj)) + band + 1]
    gap = int(round(20.0 / ws))
    c = int(round(ti))
    left, right = air[:, c + gap :].sum(), air[:, : max(c - gap, 0)].sum()
    return min(left, right) * ws * ws >= LUNG_MM2


def _bronchi(near: list, ti: float, ws: float) -> bool:
    """Two pockets side by side, one each side of the trachea's line: the main bronchi. The
    oesophagus, often holding air, lies behind the trachea, not beside it."""
    for a in near:
        for b in near:
            di = (a[1] - b[1]) * ws
            if a[1] > ti > b[1] and di >= BRONCHI_APART_MM and abs(a[0] - b[0]) * ws <= di:
                return True
    return False
