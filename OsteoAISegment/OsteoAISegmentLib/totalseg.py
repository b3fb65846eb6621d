"""Adapter for TotalSegmentator (https://github.com/wasserth/TotalSegmentator, Apache-2.0), used only
when the user has installed it with its weights; OsteoAI never downloads it.

Its v2 "total" ids are mapped to VerSe ids (27 L5 ... 43 T1 ... 50 C1 -> 24 ... 8 ... 1). It has no
vertebral-body class in the "total" task, so ``bodies`` is approximated as the anterior part of each
vertebra (an info flag says so); ribs 92-115 give the rib pair count.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
from OsteoAIBaseLib.errors import CancelledError, InputError

TOTAL_DATASETS = ("Dataset291", "Dataset292", "Dataset293", "Dataset294", "Dataset295", "Dataset297", "Dataset298")
BODY_AP_FRACTION = 0.45  # vertebral body depth / whole vertebra depth (thoracolumbar average)


def _weights_dir() -> Path:
    home = os.environ.get("TOTALSEG_HOME_DIR")
    base = Path(home) if home else Path.home() / ".totalsegmentator"
    return base / "nnunet" / "results"


def _has_weights() -> bool:
    d = _weights_dir()
    return d.is_dir() and any(p.name.startswith(TOTAL_DATASETS) for p in d.iterdir())


def totalsegmentator_available() -> bool:
    return importlib.util.find_spec("totalsegmentator") is not None and _has_weights()


def _why_unavailable() -> str:
    if importlib.util.find_spec("totalsegmentator") is None:
        return (
            "TotalSegmentator is not installed (pip install TotalSegmentator, then "
            "`totalseg_download_weights -t total`); use --segmenter model or classical"
        )
    return (
        f"TotalSegmentator is installed but its 'total' weights are not in {_weights_dir()} "
        "(run `totalseg_download_weights -t total`)"
    )


def ts_to_verse(ts: np.ndarray) -> np.ndarray:
    ts = np.asarray(ts)
    out = np.zeros(ts.shape, np.int16)
    vert = (ts >= 27) & (ts <= 50)
    out[vert] = (51 - ts[vert]).astype(np.int16)
    return out


def approximate_bodies(vert: np.ndarray) -> np.ndarray:
    """Anterior BODY_AP_FRACTION of each vertebra's AP extent (j grows posterior on the canonical grid)."""
    from scipy import ndimage

    bodies = np.zeros_like(vert)
    ids = [int(i) for i in np.unique(vert) if i]
    objs = ndimage.find_objects(vert.astype(np.int32))
    for v in ids:
        sl = objs[v - 1]
        if sl is None:
            continue
        m = vert[sl] == v
        j = np.flatnonzero(m.any(axis=(0, 2)))
        cut = j[0] + int(round(BODY_AP_FRACTION * (j[-1] - j[0] + 1)))
        sub = np.zeros_like(m)
        sub[:, :cut, :] = m[:, :cut, :]
        bodies[sl][sub] = v
    return bodies


def segment_with_totalsegmentator(vol, device: str = "cpu", progress=None, cancel=None):
    from OsteoAIBaseLib import levels as lv

    from .segmentation import SpineSegmentation

    if not totalsegmentator_available():
        raise InputError(_why_unavailable())
    import nibabel as nib
    from totalsegmentator.python_api import totalsegmentator

    if cancel is not None and cancel():
        raise CancelledError("segmentation cancelled")
    if progress:
        progress(0.0, "running TotalSegmentator")
    t0 = time.perf_counter()
    img = nib.Nifti1Image(np.ascontiguousarray(vol.array.transpose(2, 1, 0)).astype(np.int16), vol.ijk_to_ras())
    dev = "gpu" if str(device).startswith(("cuda", "gpu")) else "cpu"
    roi = [f"vertebrae_{n}" for n in ["C7"] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]]
    roi += ["sacrum"] + [f"rib_{s}_{i}" for s in ("left", "right") for i in range(1, 13)]
    out = totalsegmentator(img, None, task="total", roi_subset=roi, device=dev, quiet=True)
    ts = np.asarray(out.dataobj).transpose(2, 1, 0)
    if ts.shape != vol.shape:
        raise InputError("TotalSegmentator returned a labelmap on another grid")
    vert = ts_to_verse(ts)
    present = sorted((int(v) for v in np.unique(vert) if v), key=lv.ORDER.index)
    if not present:
        raise InputError("TotalSegmentator found no vertebra in this volume")
    ribs_left = {int(t) - 91 for t in np.unique(ts) if 92 <= t <= 103}
    ribs_right = {int(t) - 103 for t in np.unique(ts) if 104 <= t <= 115}
    partial, qc = [], ["body_approx: vertebral bodies approximated as the anterior part of each vertebra"]
    for v in present:
        kk = np.flatnonzero((vert == v).any(axis=(1, 2)))
        if kk[0] == 0 or kk[-1] == vert.shape[0] - 1:
            partial.append(v)
            qc.append(f"fov_cut: {lv.name(v)} touches the edge of the scan")
    if progress:
        progress(1.0, "TotalSegmentator done")
    return SpineSegmentation(
        vertebrae=vert,
        bodies=approximate_bodies(vert),
        levels=present,
        qc=qc,
        info={
            "rib_pairs": len(ribs_left & ribs_right),
            "partial_levels": partial,
            "seconds": round(time.perf_counter() - t0, 3),
        },
        segmenter=f"totalsegmentator@{_ts_version()}",
    )


def _ts_version() -> str:
    try:
        from importlib.metadata import version

        return version("TotalSegmentator")
    except Exception:
        return "unknown"
