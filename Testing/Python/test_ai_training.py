"""Training-loop pieces of the vertebra model that run without a GPU: the loss's per-sample weights
(pseudo-labelled patches count less) and the augmentation's label bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from OsteoAILib.segmenter_training.train import augment, losses  # noqa: E402
from OsteoAISegmentLib.ai.labels import BODY, IGNORE, N_OUT  # noqa: E402


def _batch(b=2, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, N_OUT, n, n, n, generator=g)
    sem = torch.zeros(b, n, n, n, dtype=torch.uint8)
    sem[:, 4:12, 4:12, 4:12] = BODY
    lvl = torch.full((b, n, n, n), IGNORE, dtype=torch.uint8)
    lvl[:, 4:12, 4:12, 4:12] = 12  # L1
    return logits, sem, lvl


def test_zero_weight_sample_does_not_move_the_cross_entropy():
    logits, sem, lvl = _batch()
    _, ref = losses(logits[:1], sem[:1], lvl[:1])
    # the second sample is nonsense, but with weight 0 it only enters the normaliser
    sem2 = sem.clone()
    sem2[1] = 0
    _, parts = losses(logits, sem2, lvl, torch.tensor([1.0, 0.0]))
    _, parts_w1 = losses(logits, sem2, lvl, torch.tensor([1.0, 1.0]))
    assert parts["lvl"] == pytest.approx(ref["lvl"] / 2, rel=1e-4)  # same voxels, half of them weighted
    assert parts["ce"] < parts_w1["ce"]


def test_augment_keeps_labels_on_the_grid_and_air_unlabelled():
    _, sem, lvl = _batch(b=8, n=24)
    img = torch.where(sem > 0, 0.4, 0.0).float()
    gen = torch.Generator().manual_seed(3)
    out, s2, l2 = augment(img.clone(), sem.clone(), lvl.clone(), gen)
    assert out.shape == img.shape and s2.dtype == torch.uint8 and l2.dtype == torch.uint8
    assert set(np.unique(s2.numpy())) <= {0, BODY, IGNORE}
    assert set(np.unique(l2.numpy())) <= {12, IGNORE}
    # a tight field of view: wherever the image was set to exact air padding, the labels are unknown
    air = out == -1.0
    assert air.any()  # this seed cuts at least one patch
    assert torch.all(s2[air] == IGNORE) and torch.all(l2[air] == IGNORE)
