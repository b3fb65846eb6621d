"""What the network predicts, and how the training labels map onto it.

Two groups of output channels share one network:
- semantic classes (softmax over ``SEM``): what kind of tissue a voxel is; post-processing splits
  vertebral bodies at the discs, attaches posterior elements and finds the rib anchor from them;
- level classes (softmax over ``LEVELS``), only meaningful on vertebra voxels: a per-voxel vote for
  the vertebra's identity, used with the anatomical order to name the instances.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255

BG, BODY, POSTERIOR, DISC, RIB, SACRUM = range(6)
SEM_NAMES = ["background", "vertebral_body", "posterior_elements", "disc", "rib", "sacrum"]
N_SEM = len(SEM_NAMES)

# VerSe ids T1..T12, L1..L5 -> level channel 0..16. C7 and the transitional T13/L6 are not
# classes of their own: too rare to learn; post-processing names them from the order.
LEVELS: list[int] = list(range(8, 25))
N_LEVELS = len(LEVELS)
LEVEL_INDEX = {v: i for i, v in enumerate(LEVELS)}

N_OUT = N_SEM + N_LEVELS


def level_target(verse: np.ndarray) -> np.ndarray:
    """VerSe labelmap -> level-channel target (IGNORE outside the known levels)."""
    out = np.full(verse.shape, IGNORE, np.uint8)
    for v, i in LEVEL_INDEX.items():
        out[verse == v] = i
    return out


def totalseg_to_verse(ts: np.ndarray) -> np.ndarray:
    """TotalSegmentator v2 'total' ids -> VerSe ids (27 L5 ... 50 C1 map to 24 ... 1; 25/26 -> 26 sacrum)."""
    ts = np.asarray(ts)
    out = np.zeros(ts.shape, np.int16)
    vert = (ts >= 27) & (ts <= 50)
    out[vert] = 51 - ts[vert].astype(np.int16)
    out[(ts == 25) | (ts == 26)] = 26
    return out


TS_RIBS = (92, 115)  # left 1-12, right 1-12
