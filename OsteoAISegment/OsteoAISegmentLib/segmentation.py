"""What every segmenter returns: the labelled vertebrae of one volume on its canonical grid.

Its own module so that the segmenters (classical, the trained model, TotalSegmentator) and the dispatcher
in :mod:`api` that runs them all import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SpineSegmentation:
    vertebrae: np.ndarray  # int16 [k, j, i] VerSe ids, whole vertebra, canonical grid
    bodies: np.ndarray  # int16, vertebral body only (same ids)
    levels: list[int]  # ids present, cranial -> caudal
    qc: list[str] = field(default_factory=list)  # "code: explanation"
    info: dict = field(default_factory=dict)  # rib_pairs, partial_levels, canal_centerline_kji, ...
    segmenter: str = ""
