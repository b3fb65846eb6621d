"""Load the trained vBMD model (checking its sha256) and predict vBMD with a 95% interval.

The weights live in ``models/vbmd-mlp/`` of the repository (or the folder named by the
``OSTEOAI_VBMD_MODEL`` environment variable); nothing is ever downloaded at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from OsteoAIBaseLib import model_registry
from OsteoAIBaseLib.errors import OsteoAIError

from . import model as mlp
from .features import FEATURE_NAMES, LevelInput, level_features, reference_noise_sd

MODEL_NAME = "vbmd-mlp"
# 3.0: trained on realistic phantoms (kernels, microstructure, habitus, 0.6-5 mm slices); 3.1: their tissues
# drawn around the real scans' offsets and the air_clip_margin_hu feature.
MODEL_VERSION = "3.1"
MODEL_FORMAT = "osteoai/vbmd-mlp/v1"
ENV_VAR = "OSTEOAI_VBMD_MODEL"
DEFAULT_DIR = model_registry.shipped_dir(MODEL_NAME)  # repository models/, else the installed package's


class ModelError(OsteoAIError):
    """The model files are missing, altered or do not match this software."""


sha256_file = model_registry.sha256_file


def model_dir(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


@dataclass
class VbmdModel:
    meta: dict
    weights: dict[str, np.ndarray]
    path: Path
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, as loaded
    pinned: bool = False  # the files are the ones shipped under this name and version

    def describe(self) -> dict:
        """What results.json records about the model used."""
        return {"files": dict(self.files), "pinned": self.pinned}

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
        mean, sigma = mlp.head(
            raw,
            x[:, FEATURE_NAMES.index("plain_vbmd")],
            float(self.meta["target_scale"]),
            self.meta.get("max_correction"),
        )
        half = float(self.meta["interval_k"]) * sigma
        lo, hi = mean - half, mean + half
        if single:
            return float(mean[0]), float(lo[0]), float(hi[0])
        return mean, lo, hi

    def in_domain(self, features: np.ndarray) -> str | None:
        """None when the features lie inside the training ranges (with a margin), else why not
        (every feature outside, joined by '; ')."""
        out = self.domain_failures(features)
        return "; ".join(out) if out else None

    def domain_failures(self, features: np.ndarray) -> list[str]:
        """One 'name value outside the model's range lo-hi' per feature outside its training range."""
        x = np.asarray(features, dtype=np.float64)
        out = []
        for name, (lo, hi) in self.meta["domain"].items():
            v = x[FEATURE_NAMES.index(name)]
            if not lo <= v <= hi:
                out.append(f"{name} {v:.3g} outside the model's range {lo:.3g}-{hi:.3g}")
        return out


# Card fields the model cannot be used without, and their types.
_REQUIRED = {
    "name": str,
    "version": str,
    "normalisation": dict,
    "target_scale": (int, float),
    "interval_k": (int, float),
    "domain": dict,
    "weights_file": str,
}


def load_model(path: str | os.PathLike | None = None) -> VbmdModel:
    """Load ``model.json`` + weights from ``path`` (a folder); raise ModelError when missing or altered.

    The weights must have the sha256 pinned in :mod:`OsteoAIBaseLib.model_registry` for the card's name and
    version (the card's own hash is only trusted for unpinned, user-trained versions), lie inside the
    folder, and load without pickle.
    """
    d = model_dir(path)
    meta_path = d / "model.json"
    if not meta_path.is_file():
        raise ModelError(f"vBMD model not found: {meta_path} is missing (train it with `osteoai train-vbmd`)")
    try:
        meta = model_registry.read_card(d)
    except model_registry.CardError as e:
        raise ModelError(f"vBMD model description {e}") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{meta_path} has format {meta.get('format')!r}, this software reads {MODEL_FORMAT!r}")
    if list(meta.get("features", [])) != list(FEATURE_NAMES):
        raise ModelError(f"{meta_path} was trained on other features than this software computes")
    for key, typ in _REQUIRED.items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            kind = getattr(typ, "__name__", "number")
            raise ModelError(f"{meta_path} is incomplete: {key!r} is missing or not a {kind}")
    _check_card_arrays(meta, meta_path)
    try:
        wpath = model_registry.confined(d, meta["weights_file"])
    except model_registry.IntegrityError as e:
        raise ModelError(f"vBMD model refused: {e}") from None
    if not wpath.is_file():
        raise ModelError(f"vBMD model weights missing: {wpath}")
    try:
        digest, pinned = model_registry.check(meta["name"], meta["version"], wpath, meta.get("weights_sha256"))
    except model_registry.IntegrityError as e:
        raise ModelError(f"vBMD model weights are altered: {e}") from None
    try:
        with np.load(wpath, allow_pickle=False) as z:
            weights = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except Exception as e:
        raise ModelError(f"vBMD model weights {wpath.name} cannot be read safely: {str(e)[:120]}") from None
    _check_weights(weights, wpath)
    return VbmdModel(meta=meta, weights=weights, path=d, files={wpath.name: digest}, pinned=pinned)


def _check_card_arrays(meta: dict, meta_path: Path) -> None:
    n = len(FEATURE_NAMES)
    norm = meta["normalisation"]
    try:
        mean, std = np.asarray(norm["mean"], dtype=float), np.asarray(norm["std"], dtype=float)
        ok = mean.shape == (n,) and std.shape == (n,) and np.all(np.isfinite(mean)) and np.all(std > 0)
        ok = ok and all(f in FEATURE_NAMES for f in norm.get("ignored", []))
        ok = ok and all(k in FEATURE_NAMES and float(lo) <= float(hi) for k, (lo, hi) in meta["domain"].items())
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ModelError(f"{meta_path} is malformed: normalisation or domain does not fit {n} features")


def _check_weights(weights: dict, wpath: Path) -> None:
    shapes_ok = True
    n_in = len(FEATURE_NAMES)
    for name in mlp.LAYERS:
        w, b = weights.get(f"{name}.weight"), weights.get(f"{name}.bias")
        if w is None or b is None or w.ndim != 2 or w.shape[1] != n_in or b.shape != (w.shape[0],):
            shapes_ok = False
            break
        n_in = w.shape[0]
    if not shapes_ok or n_in != 2 or not all(np.all(np.isfinite(v)) for v in weights.values()):
        raise ModelError(f"vBMD model weights {wpath.name} do not form the expected network")


_LOADED: dict[Path, VbmdModel] = {}


def default_model() -> VbmdModel:
    """The model of :func:`model_dir` (loaded and checked once per folder and process)."""
    d = model_dir()
    if d not in _LOADED:
        _LOADED[d] = load_model(d)
    return _LOADED[d]


def predict(features: np.ndarray):
    """(vbmd, lo, hi) from the default model; see :meth:`VbmdModel.predict`."""
    return default_model().predict(features)


def make_estimator(
    canonical, cal, required: bool = False, model: VbmdModel | None = None, problems: list[str] | None = None
):
    """(estimator, model tag) for ``bmd.measure_levels``; (None, None) when no model can be loaded
    and ``required`` is False: the reason is then appended to ``problems`` as a QC flag, never dropped.

    The estimator returns None (keep the calibrated-HU estimate) for a level outside the model's
    training domain, e.g. a calibration method it was not trained on or a kVp it never saw.
    """
    if model is None:
        try:
            model = default_model()
        except ModelError as e:
            if required:
                raise
            if problems is not None:
                problems.append(f"vbmd_model_unavailable: {MODEL_NAME} not used ({e}); calibrated-HU vBMD reported")
            return None, None
    if not model.pinned and problems is not None:
        problems.append(
            f"vbmd_model_unpinned: {model.tag} is not a shipped model (sha256 "
            f"{next(iter(model.files.values()), '?')[:12]}...)"
        )
    age = canonical.meta.get("age")
    age = float(age) if isinstance(age, (int, float)) else None
    noise = reference_noise_sd(cal)
    methods = set(model.meta.get("calibration_methods", []))

    def estimate(label, values, level_cal):
        why = estimate.why
        if methods and level_cal.method not in methods:
            why[label] = f"calibration {level_cal.method!r} is not one the model was trained on ({', '.join(methods)})"
            return None
        vals = np.asarray(values)
        if vals.size < 2:
            why[label] = "ROI too small for the model"
            return None
        try:
            f = level_features(LevelInput(vals, level_cal, canonical.spacing, noise, age))
        except ValueError as e:  # e.g. a kVp the physics tables do not cover
            why[label] = f"features not computable: {e}"
            return None
        out = model.in_domain(f)
        if out is not None:
            why[label] = f"outside the model's domain: {out}"
            return None
        why[label] = f"in the model's domain ({model.tag})"
        v, lo, hi = model.predict(f)
        return v, (lo, hi), f"ai:{model.tag}"

    estimate.why = {}  # label -> why this level got (or did not get) the AI estimate; bmd copies it
    return estimate, model.tag
