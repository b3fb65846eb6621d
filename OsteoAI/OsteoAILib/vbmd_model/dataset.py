"""Training/evaluation rows from digital phantoms: one row per vertebral level.

Each phantom goes through the same stages as a real scan (classical segmentation, trabecular ROIs,
internal calibration) and then :func:`features.volume_level_features`, so the model sees exactly
what it will see in the pipeline. ``masks="truth"`` swaps the segmentation for the phantom's own
masks (faster; for quick experiments only).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .features import FEATURE_NAMES, volume_level_features

# Ranges the training phantoms span (recorded in model.json; the model's domain).
RANGES = {
    "kvp": [80, 90, 100, 110, 120, 130, 140],
    "dose": ["standard", "low", "ultralow"],
    "age_years": (30.0, 90.0),
    "marrow_fat_jitter_sd": 0.06,  # biological spread of marrow fat around its age mean
    "hu_scale": (0.9, 1.1),
    "hu_offset": (-30.0, 30.0),
    "beam_hardening": (0.0, 1.0),
    "contrast_probability": 0.3,
    "vbmd_mg_cm3": (30.0, 250.0),
    "age_known_probability": 0.5,
}
SMALL_GRID = {"matrix": 192, "spacing": (1.5, 1.5, 2.0), "levels": "T11-L2"}
CACHE_VERSION = 1


def sample_params(seed: int) -> dict:
    """PhantomParams keyword arguments for phantom ``seed`` (deterministic in the seed)."""
    from ..physics import marrow_fat_fraction_for_age

    rng = np.random.default_rng([CACHE_VERSION, int(seed)])
    age = float(rng.uniform(*RANGES["age_years"]))
    fat = marrow_fat_fraction_for_age(age) + rng.normal(0.0, RANGES["marrow_fat_jitter_sd"])
    lo, hi = RANGES["vbmd_mg_cm3"]
    return {
        "seed": int(seed),
        "kvp": float(rng.choice(RANGES["kvp"])),
        "dose": str(rng.choice(RANGES["dose"])),
        "age": round(age, 1),
        "marrow_fat_fraction": float(np.clip(fat, 0.05, 0.9)),
        "hu_scale": float(rng.uniform(*RANGES["hu_scale"])),
        "hu_offset": float(rng.uniform(*RANGES["hu_offset"])),
        "beam_hardening": float(rng.uniform(*RANGES["beam_hardening"])),
        "contrast": bool(rng.random() < RANGES["contrast_probability"]),
        "bmd": float(rng.uniform(lo, hi)),
        "_age_known": bool(rng.random() < RANGES["age_known_probability"]),
        **SMALL_GRID,
    }


def _phantom_params(params: dict):
    from ..phantom import PhantomParams

    return PhantomParams(**{k: v for k, v in params.items() if not k.startswith("_")})


def truth_segmentation(ph):
    """A SpineSegmentation made of the phantom's own masks (the 'truth' mode)."""
    from OsteoAISegmentLib.api import SpineSegmentation

    from ..levels import ORDER

    present = [int(x) for x in np.unique(ph.vertebrae) if x != 0]
    return SpineSegmentation(
        vertebrae=ph.vertebrae.astype(np.int16), bodies=ph.bodies.astype(np.int16),
        levels=sorted(present, key=ORDER.index, reverse=True), segmenter="phantom-truth",
    )


def measure(vol, masks: str = "pipeline", ph=None, kvp: float | None = None):
    """(rois, calibration, seg) of a canonical volume through the real stages."""
    from OsteoAISegmentLib.api import segment_spine

    from .. import calibration, roi

    seg = truth_segmentation(ph) if masks == "truth" else segment_spine(vol, method="classical")
    rois = roi.place_rois(vol, seg)
    cal = calibration.calibrate(vol, seg, method="internal", kvp=kvp)
    return rois, cal, seg


def truth_by_label(ph) -> dict[int, dict]:
    from ..levels import label

    return {label(t["level"]): t for t in ph.truth["levels"]}


def phantom_rows(params: dict, masks: str = "pipeline") -> list[dict]:
    """One row per level found: features, the truth, the plain estimate and the phantom settings."""
    from ..phantom import make_phantom

    ph = make_phantom(_phantom_params(params))
    rois, cal, _ = measure(ph.volume, masks, ph, kvp=params["kvp"])
    truth = truth_by_label(ph)
    age = params["age"] if params.get("_age_known", True) else None
    feats = volume_level_features(ph.volume, rois.labelmap, sorted(truth), cal, age=age)
    rows = []
    for lab, f in feats.items():
        t = truth[lab]
        if t.get("fracture"):
            continue  # a fractured body reads falsely dense by design; the QC flag handles it
        rows.append({
            "label": lab, "features": f, "vbmd": float(t["vbmd_mg_cm3"]),
            "seed": params["seed"], "kvp": params["kvp"], "dose": params["dose"],
        })
    return rows


def _cache_key(params: dict, masks: str) -> str:
    blob = json.dumps({"p": params, "m": masks, "f": list(FEATURE_NAMES), "v": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_table(seeds, cache_dir: str | Path | None, masks: str = "pipeline", log=print) -> dict:
    """Rows of many phantoms as arrays {X, y, seed, kvp, dose, label}; per-phantom cache in ``cache_dir``.

    A phantom the stages fail on (e.g. segmentation finds no spine) is logged and skipped.
    """
    cache = Path(cache_dir) if cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    X, y, sd, kv, do, lb = [], [], [], [], [], []
    seeds = list(seeds)
    for n, s in enumerate(seeds):
        params = sample_params(s)
        f = cache / f"{s}-{_cache_key(params, masks)}.json" if cache else None
        if f is not None and f.is_file():
            rows = json.loads(f.read_text())
        else:
            try:
                rows = phantom_rows(params, masks)
            except Exception as e:  # noqa: BLE001 - one bad phantom must not stop a long run
                log(f"  phantom {s}: skipped ({type(e).__name__}: {e})")
                rows = []
            for r in rows:
                r["features"] = [float(v) for v in r["features"]]
            if f is not None:
                f.write_text(json.dumps(rows))
        for r in rows:
            X.append(r["features"])
            y.append(r["vbmd"])
            sd.append(r["seed"])
            kv.append(r["kvp"])
            do.append(r["dose"])
            lb.append(r["label"])
        if (n + 1) % 10 == 0 or n + 1 == len(seeds):
            log(f"  phantoms {n + 1}/{len(seeds)}: {len(y)} level rows")
    return {
        "X": np.asarray(X, dtype=np.float64).reshape(-1, len(FEATURE_NAMES)),
        "y": np.asarray(y, dtype=np.float64),
        "seed": np.asarray(sd, dtype=np.int64),
        "kvp": np.asarray(kv, dtype=np.float64),
        "dose": np.asarray(do, dtype=object),
        "label": np.asarray(lb, dtype=np.int64),
    }
