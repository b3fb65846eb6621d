"""The network: a MONAI SegResNet, configured from ``model.json`` so the weights and their
architecture never drift apart."""

from __future__ import annotations

from .labels import N_OUT

DEFAULT_CONFIG = {
    "architecture": "SegResNet",
    "init_filters": 8,
    "blocks_down": [1, 2, 2, 4],
    "blocks_up": [1, 1, 1],
    "dropout_prob": 0.0,
    "out_channels": N_OUT,
}


def build_network(config: dict | None = None):
    from monai.networks.nets import SegResNet

    c = {**DEFAULT_CONFIG, **(config or {})}
    if c["architecture"] != "SegResNet":
        raise ValueError(f"unsupported architecture {c['architecture']!r}")
    return SegResNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=int(c["out_channels"]),
        init_filters=int(c["init_filters"]),
        blocks_down=tuple(c["blocks_down"]),
        blocks_up=tuple(c["blocks_up"]),
        dropout_prob=c["dropout_prob"] or None,
    )
