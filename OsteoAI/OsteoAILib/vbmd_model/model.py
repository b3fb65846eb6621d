"""The vBMD MLP: standardised features -> (correction to the calibrated-HU estimate, spread).

Architecture: Linear(n, h) - SiLU - Linear(h, h) - SiLU - Linear(h, 2), dropout while training.
Output 0 is a correction ``d`` in units of ``target_scale`` mg/cm3, output 1 a spread ``s``; the prediction is

    mean  = plain_vbmd + M * tanh(target_scale * d / M)     (M = max_correction, from training)
    sigma = target_scale * (softplus(s) + SIGMA_FLOOR)
    95% interval = mean -/+ interval_k * sigma

``interval_k`` is set after training on a held-out split (split-conformal), so the interval's
coverage is measured, not assumed Gaussian. Training uses torch; inference runs the same
arithmetic in numpy from the saved weights, so the screening path needs no torch import.
"""

from __future__ import annotations

import numpy as np

SIGMA_FLOOR = 0.02
LAYERS = ("l0", "l1", "l2")


def build_torch(n_in: int, hidden: int, dropout: float = 0.0):
    """Dropout (training only) is what keeps ~1000 rows from being memorised; eval mode and the
    numpy :func:`forward` ignore it."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, 2),
    )


def torch_to_arrays(net) -> dict[str, np.ndarray]:
    """{l0.weight, l0.bias, ...} float32 arrays from the nn.Sequential of :func:`build_torch`."""
    linears = [m for m in net if hasattr(m, "weight")]
    out = {}
    for name, m in zip(LAYERS, linears, strict=True):
        out[f"{name}.weight"] = m.weight.detach().cpu().numpy().astype(np.float32)
        out[f"{name}.bias"] = m.bias.detach().cpu().numpy().astype(np.float32)
    return out


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def forward(weights: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Raw network outputs [n, 2] for standardised inputs ``z`` [n, n_features] (numpy, float64)."""
    h = np.asarray(z, dtype=np.float64)
    for idx, name in enumerate(LAYERS):
        h = h @ weights[f"{name}.weight"].astype(np.float64).T + weights[f"{name}.bias"].astype(np.float64)
        if idx < len(LAYERS) - 1:
            h = _silu(h)
    return h


def bounded(correction, max_correction: float | None, tanh=np.tanh):
    """Soft clip of the correction to +-max_correction: identity for small values, never beyond the
    largest correction seen in training (an MLP extrapolates wildly outside its data)."""
    if not max_correction:
        return correction
    return max_correction * tanh(correction / max_correction)


def head(
    raw: np.ndarray, plain: np.ndarray, target_scale: float, max_correction: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sigma) in mg/cm3 from raw outputs and the plain calibrated-HU estimate."""
    mean = np.asarray(plain, dtype=np.float64) + bounded(target_scale * raw[:, 0], max_correction)
    sigma = target_scale * (_softplus(raw[:, 1]) + SIGMA_FLOOR)
    return mean, sigma


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray, ignored: list[int] | None = None) -> np.ndarray:
    """z-scores; ``ignored`` columns are set to 0 so the network cannot depend on them."""
    z = (np.asarray(x, dtype=np.float64) - mean) / std
    if ignored:
        z[:, ignored] = 0.0
    return z
