"""Load the trained vBMD model (checking its sha256) and predict vBMD with a 95% interval.

The weights live in ``models/vbmd-mlp/`` of the repository (or the folder named by the
``OSTEOAI_VBMD_MODEL`` environment variable); nothing is ever downloaded at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OsteoAIError
from . import model as mlp
from .features import FEATURE_NAMES, LevelInput, level_features, reference_noise_sd

MODEL_NAME = "vbmd-mlp"
MODEL_VERSION = "2.0"  # 2.0: 31 features (blood enhancement), trained on varied grids
MODEL_FORMAT = "osteoai/vbmd-mlp/v1"
ENV_VAR = "OSTEOAI_VBMD_MODEL"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "models" / MODEL_NAME


class ModelError(OsteoAIError):
    """The model files are missing, altered or do not match this software."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_dir(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


@dataclass
class VbmdModel:
    meta: dict
    weights: dict[str, np.ndarray]
    path: Path

    @property
    def tag(self) -> str:
        return f"{self.meta['name']}@{self.meta['version']}"

    def predict(self, features: np.ndarray) -> tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]:
        """(vbmd, lo, hi) mg/cm3 for one feature vector (floats) or a [n, n_features] array (arrays)."""
        x = np.asarray(features, dtype=np.float64)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected {len(FEATURE_NAMES)} features, got {x.shape[1]}")
        norm = self.meta["normalisation"]
        ignored = [FEATURE_NAMES.index(f) for f in norm.get("ignored", [])]
        z = mlp.standardise(x, np.asarray(norm["mean"]), np.asarray(norm["std"]), ignored)
        raw = mlp.forward(self.weights, z)
        mean, sigma = mlp.head(raw, x[:, FEATURE_NAMES.index("plain_vbmd")], float(self.meta["target_scale"]),
                               self.meta.get("max_correction"))
        half = float(self.meta["interval_k"]) * sigma
        lo, hi = mean - half, mean + half
        if single:
            return float(mean[0]), float(lo[0]), float(hi[0])
        return mean, lo, hi

    def in_domain(self, features: np.ndarray) -> str | None:
        """None when the features lie inside the training ranges (with a margin), else why not."""
        x = np.asarray(features, dtype=np.float64)
        for name, (lo, hi) in self.meta["domain"].items():
            v = x[FEATURE_NAMES.index(name)]
            if not lo <= v <= hi:
                return f"{name} {v:.3g} outside the model's range {lo:.3g}-{hi:.3g}"
        return None


def load_model(path: str | os.PathLike | None = None) -> VbmdModel:
    """Load ``model.json`` + weights from ``path`` (a folder); raise ModelError when missing or altered."""
    d = model_dir(path)
    meta_path = d / "model.json"
    if not meta_path.is_file():
        raise ModelError(f"vBMD model not found: {meta_path} is missing (train it with `osteoai train-vbmd`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"vBMD model description {meta_path} is unreadable: {e}") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{meta_path} has format {meta.get('format')!r}, this software reads {MODEL_FORMAT!r}")
    if list(meta.get("features", [])) != list(FEATURE_NAMES):
        raise ModelError(f"{meta_path} was trained on other features than this software computes")
    wpath = d / meta["weights_file"]
    if not wpath.is_file():
        raise ModelError(f"vBMD model weights missing: {wpath}")
    digest = sha256_file(wpath)
    if digest != meta.get("weights_sha256"):
        raise ModelError(
            f"vBMD model weights {wpath.name} are altered: sha256 {digest[:12]}... does not match "
            f"model.json ({str(meta.get('weights_sha256'))[:12]}...)"
        )
    with np.load(wpath, allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    return VbmdModel(meta=meta, weights=weights, path=d)


_DEFAULT: VbmdModel | None = None


def default_model() -> VbmdModel:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_model()
    return _DEFAULT


def predict(features: np.ndarray):
    """(vbmd, lo, hi) from the default model; see :meth:`VbmdModel.predict`."""
    return default_model().predict(features)


def make_estimator(canonical, cal, required: bool = False, model: VbmdModel | None = None):
    """(estimator, model tag) for ``bmd.measure_levels``; (None, None) when no model is installed
    and ``required`` is False.

    The estimator returns None (keep the calibrated-HU estimate) for a level outside the model's
    training domain, e.g. a calibration method it was not trained on or a kVp it never saw.
    """
    if model is None:
        try:
            model = default_model()
        except ModelError:
            if required:
                raise
            return None, None
    age = canonical.meta.get("age")
    age = float(age) if isinstance(age, (int, float)) else None
    noise = reference_noise_sd(cal)
    methods = set(model.meta.get("calibration_methods", []))

    def estimate(label, values, level_cal):
        if methods and level_cal.method not in methods:
            return None
        vals = np.asarray(values)
        if vals.size < 2:
            return None
        try:
            f = level_features(LevelInput(vals, level_cal, canonical.spacing, noise, age))
        except ValueError:  # e.g. a kVp the physics tables do not cover
            return None
        if model.in_domain(f) is not None:
            return None
        v, lo, hi = model.predict(f)
        return v, (lo, hi), f"ai:{model.tag}"

    return estimate, model.tag
