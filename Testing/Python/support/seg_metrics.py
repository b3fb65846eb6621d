"""Overlap of a predicted labelmap with a true mask (the segmentation tests)."""

from __future__ import annotations

import numpy as np


def best_label(pred: np.ndarray, truth_mask: np.ndarray) -> int:
    """The predicted label that covers most of ``truth_mask`` (0 when none does)."""
    v = pred[truth_mask]
    v = v[v > 0]
    return int(np.bincount(v).argmax()) if len(v) else 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))
