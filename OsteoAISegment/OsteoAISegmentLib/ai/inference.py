"""Run the trained vertebra model on a canonical volume.

The weights live in ``models/vertebra-seg/`` at the repository root (or ``$OSTEOAI_MODELS/vertebra-seg``);
``model.json`` there names the weights file, its sha256, the architecture and the preprocessing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from OsteoAIBaseLib.errors import CancelledError, InputError, OsteoAIError
from OsteoAIBaseLib.volume import Volume

from .labels import BODY, N_SEM

MODEL_NAME = "vertebra-seg"


def model_dir() -> Path:
    env = os.environ.get("OSTEOAI_MODELS")
    if env:
        return Path(env) / MODEL_NAME
    from OsteoAIBaseLib.model_registry import shipped_dir

    return shipped_dir(MODEL_NAME)  # repository models/, else the installed package's (wheel, extension)


class ModelUnavailable(OsteoAIError):
    """The model's files are missing, malformed, or not the shipped ones."""


def sha256(path: Path) -> str:
    from OsteoAIBaseLib.model_registry import sha256_file

    return sha256_file(path)


def read_card(directory: Path | None = None) -> dict:
    from OsteoAIBaseLib.model_registry import CardError
    from OsteoAIBaseLib.model_registry import read_card as read

    try:
        return read(directory or model_dir())
    except CardError as e:
        raise ModelUnavailable(f"the vertebra model is not usable: {e}") from None


def check_weights(directory: Path | None = None) -> tuple[dict, Path]:
    """Return (model.json, weights path); raise ModelUnavailable if missing, outside the folder, or not
    the shipped file for the card's version (the pin lives in OsteoAIBaseLib.model_registry, not the card)."""
    from OsteoAIBaseLib.model_registry import IntegrityError, check, confined

    d = directory or model_dir()
    card = read_card(d)
    for key in ("weights", "sha256", "network", "spacing_mm"):
        if key not in card:
            raise ModelUnavailable(f"the vertebra model card is incomplete: {key!r} missing")
    try:
        w = confined(d, card["weights"])
    except IntegrityError as e:
        raise ModelUnavailable(f"the vertebra model is refused: {e}") from None
    if not w.is_file():
        raise ModelUnavailable(f"the vertebra model weights are missing: {w}")
    try:
        digest, pinned = check(card.get("name", MODEL_NAME), str(card.get("version", "0")), w, card["sha256"])
    except IntegrityError as e:
        raise ModelUnavailable(f"the vertebra model weights are altered or corrupt: {e}") from None
    card = {**card, "sha256": digest, "_pinned": pinned}
    return card, w


def runtime_missing() -> str | None:
    """Why the network could not run in this install (a package it needs is absent), else None. Found
    without importing torch, which alone takes ~1.5 s: ``auto`` asks this on every classical run."""
    from importlib.util import find_spec

    missing = [m for m in ("torch", "monai") if find_spec(m) is None]
    return f"No module named {missing[0]!r}" if missing else None


def model_available() -> bool:
    try:
        check_weights()
    except (ModelUnavailable, OSError, KeyError, ValueError, TypeError):
        return False
    return True


_CACHE: dict = {}


def load_model(device: str = "cpu", directory: Path | None = None):
    import torch

    from .network import build_network

    card, w = check_weights(directory)
    key = (str(w), card["sha256"], device)
    if key not in _CACHE:
        try:
            net = build_network(card["network"])
            # weights_only: tensors and plain containers only, never arbitrary pickled objects.
            state = torch.load(w, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as e:
            raise ModelUnavailable(f"the vertebra model cannot be loaded safely: {str(e).strip()[:160]}") from None
        net.eval().to(device)
        _CACHE.clear()
        _CACHE[key] = (net, card)
    return _CACHE[key]


def _resolve_device(device: str) -> str:
    import torch

    d = (device or "cpu").lower()
    if d in ("gpu", "cuda", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if d == "auto":
            return "cpu"
        raise InputError("device cuda was asked for but no CUDA GPU is available")
    if d.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device} was asked for but no CUDA GPU is available")
    return d


def predict(x: np.ndarray, net, card: dict, device: str = "cpu", cancel=None):
    """Normalised coarse array -> (semantic argmax uint8, level softmax float32 (N_LEVELS, ...))."""
    import torch
    from monai.inferers import sliding_window_inference

    roi = tuple(card.get("roi_size", (128, 112, 128)))
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device)

    def fwd(b):
        if cancel is not None and cancel():
            raise CancelledError("segmentation cancelled")
        return net(b)

    amp = device.startswith("cuda")
    with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
        y = sliding_window_inference(
            t, roi, 1 if device == "cpu" else 4, fwd, overlap=0.25, mode="gaussian", cval=-1.0
        )  # pad with air, as in training
    y = y[0].float()
    sem = torch.argmax(y[:N_SEM], dim=0).to(torch.uint8)
    lvl = torch.softmax(y[N_SEM:], dim=0)
    return sem.cpu().numpy(), lvl.cpu().numpy()


def segment_with_model(
    vol: Volume,
    device: str = "cpu",
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
):
    from ..segmentation import SpineSegmentation
    from . import preprocess as pp  # imports torch: only when the network runs
    from .postprocess import label_vertebrae

    def report(f, msg):
        if progress:
            progress(f, msg)
        if cancel is not None and cancel():
            raise CancelledError("segmentation cancelled")

    if vol.array.ndim != 3 or min(vol.shape) < 2:
        raise InputError("the model needs a 3D volume")
    t0 = time.perf_counter()
    report(0.0, "loading the vertebra model")
    dev = _resolve_device(device)
    net, card = load_model(dev)
    target = float(card["spacing_mm"])
    report(0.05, "resampling")
    cshape = pp.coarse_shape(vol.shape, vol.spacing, target)
    x = pp.normalise(pp.resample_image(vol.array, cshape, dev))
    bb = pp.body_bbox(x)
    report(0.15, "running the network")
    sem_c, lvl_c = predict(x[bb], net, card, dev, cancel)
    report(0.8, "labelling vertebrae")
    res = label_vertebrae(sem_c, lvl_c, target, scan_k_range=(0, cshape[0]))
    if not res["levels"]:
        raise InputError("no vertebra found in this volume (the model saw no spine)")
    coarse = np.zeros(cshape, np.int16)
    coarse[bb] = res["vertebrae"]
    coarse_body = np.zeros(cshape, np.int16)
    coarse_body[bb] = np.where(sem_c == BODY, res["vertebrae"], 0)
    vert = pp.resample_labels(coarse, vol.shape).astype(np.int16)
    bodies = pp.resample_labels(coarse_body, vol.shape).astype(np.int16)
    qc = list(res["qc"])
    for v in res["partial_levels"]:
        qc.append(f"fov_cut: {_name(v)} touches the edge of the scan")
    info = {
        "rib_pairs": res["rib_pairs"],
        "rib_levels": res["rib_levels"],
        "partial_levels": res["partial_levels"],
        "device": dev,
        "seconds": round(time.perf_counter() - t0, 3),
        "model_sha256": card["sha256"],
        "model_files": {w_name(card): card["sha256"]},
        "model_pinned": bool(card.get("_pinned")),
    }
    report(1.0, "vertebrae labelled")
    return SpineSegmentation(
        vertebrae=vert,
        bodies=bodies,
        levels=res["levels"],
        qc=qc,
        info=info,
        segmenter=f"model@{card.get('version', '0')}",
    )


def w_name(card: dict) -> str:
    return Path(str(card.get("weights", "weights"))).name


def _name(v: int) -> str:
    from OsteoAIBaseLib import levels

    return levels.NAMES.get(int(v), str(v))
