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
    "age_years": (30.0, 90.0),  # marrow fat: the phantom's age mean + its own seeded jitter
    "hu_scale": (0.9, 1.1),
    "hu_offset": (-30.0, 30.0),
    "beam_hardening": (0.0, 0.5),  # cupping up to 20 HU at the body centre
    "contrast_probability": 0.3,
    "vbmd_mg_cm3": (30.0, 250.0),  # the phantom's mean level; levels spread around it
    "age_known_probability": 0.8,  # else the age is removed from the scan's tags
}
SMALL_GRID = {"matrix": 192, "spacing": (1.5, 1.5, 2.0), "levels": "T11-L2"}
# Training grids: in-plane pixel and slice spacing drawn per phantom, the matrix sized to keep the
# small grid's field of view, so the model is not tied to one voxel size (partial volume, noise per
# voxel and ROI voxel counts all change with it).
GRID_RANGES = {"pixel_mm": (1.0, 2.0), "slice_mm": (1.0, 3.0), "fov_mm": 288.0}
LEVELS = ("T11", "T12", "L1", "L2")
CACHE_VERSION = 2


def sample_params(seed: int) -> dict:
    """PhantomParams keyword arguments for phantom ``seed`` (deterministic in the seed)."""
    rng = np.random.default_rng([CACHE_VERSION, int(seed)])
    lo, hi = RANGES["vbmd_mg_cm3"]
    base = float(rng.uniform(lo, hi))
    # thoracic a little denser than lumbar, plus a level-to-level scatter, as in real spines
    bmd = {name: round(float(np.clip(base + 1.5 * (2 - i) + rng.normal(0.0, 4.0), 5.0, 300.0)), 2)
           for i, name in enumerate(LEVELS)}
    return {
        "seed": int(seed),
        "kvp": float(rng.choice(RANGES["kvp"])),
        "dose": str(rng.choice(RANGES["dose"])),
        "age": round(float(rng.uniform(*RANGES["age_years"])), 1),
        "hu_scale": round(float(rng.uniform(*RANGES["hu_scale"])), 4),
        "hu_offset": round(float(rng.uniform(*RANGES["hu_offset"])), 2),
        "beam_hardening": round(float(rng.uniform(*RANGES["beam_hardening"])), 3),
        "contrast": bool(rng.random() < RANGES["contrast_probability"]),
        "bmd": bmd,
        "_age_known": bool(rng.random() < RANGES["age_known_probability"]),
        **SMALL_GRID,
    }


def sample_grid(seed: int) -> dict:
    """Grid keywords (matrix, spacing, levels) of training phantom ``seed``: its own stream, so
    :func:`sample_params` (and with it the benchmark's held-back phantoms) is unchanged."""
    rng = np.random.default_rng([CACHE_VERSION, int(seed), 1])
    px = round(float(rng.uniform(*GRID_RANGES["pixel_mm"])) / 0.05) * 0.05
    sl = round(float(rng.uniform(*GRID_RANGES["slice_mm"])) / 0.25) * 0.25
    matrix = 2 * int(round(GRID_RANGES["fov_mm"] / px / 2))
    return {"matrix": matrix, "spacing": (round(px, 2), round(px, 2), round(sl, 2)), "levels": SMALL_GRID["levels"]}


def training_params(seed: int, grids: str = "varied") -> dict:
    """Parameters of training phantom ``seed``: :func:`sample_params` with kVp and dose cycled over
    the seeds (every kVp x dose cell equally often, instead of by chance) and, for
    ``grids="varied"``, the grid of :func:`sample_grid`."""
    p = sample_params(seed)
    kvps, doses = RANGES["kvp"], RANGES["dose"]
    p["kvp"] = float(kvps[int(seed) % len(kvps)])
    p["dose"] = str(doses[(int(seed) // len(kvps)) % len(doses)])
    if grids == "varied":
        p.update(sample_grid(seed))
    elif grids != "fixed":
        raise ValueError(f"grids must be 'fixed' or 'varied', not {grids!r}")
    return p


def _phantom_params(params: dict):
    from ..phantom import PhantomParams

    return PhantomParams(**{k: v for k, v in params.items() if not k.startswith("_")})


def truth_segmentation(ph):
    """A SpineSegmentation made of the phantom's own masks (the 'truth' mode)."""
    from OsteoAIBaseLib.levels import ORDER
    from OsteoAISegmentLib.segmentation import SpineSegmentation

    present = [int(x) for x in np.unique(ph.vertebrae) if x != 0]
    return SpineSegmentation(
        vertebrae=ph.vertebrae.astype(np.int16), bodies=ph.bodies.astype(np.int16),
        levels=sorted(present, key=ORDER.index, reverse=True), segmenter="phantom-truth",
    )


class _Rois:
    def __init__(self, labelmap):
        self.labelmap = labelmap
        self.info = {}


def truth_core_rois(ph, margin_mm: float = 2.5) -> _Rois:
    """Trabecular core of each phantom body (>= margin_mm from cortex and vein): ROIs without roi.py."""
    from scipy import ndimage

    from ..phantom import TISSUES

    out = np.zeros(ph.bodies.shape, np.int16)
    sp = ph.volume.spacing
    trab = ph.tissues == TISSUES["trabecular"]
    for lab, box in enumerate(ndimage.find_objects(ph.bodies.astype(np.int32)), start=1):
        if box is None:
            continue
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        m = (ph.bodies[box] == lab) & trab[box]
        d = ndimage.distance_transform_edt(m, sampling=(sp[2], sp[1], sp[0]))
        out[box][d > margin_mm] = lab
    return _Rois(out)


def measure(vol, masks: str = "pipeline", ph=None, kvp: float | None = None):
    """(rois, calibration, seg) of a canonical volume through the real stages.

    ``masks="truth"``: the phantom's own vertebra masks replace the segmenter; the ROIs are placed
    by roi.py on them (or, where roi.py is not installed, are the phantom's trabecular cores).
    """
    from .. import calibration

    if masks == "truth":
        seg = truth_segmentation(ph)
    else:
        from OsteoAISegmentLib.api import segment_spine

        seg = segment_spine(vol, method="classical")
    try:
        from .. import roi
    except ImportError:
        if masks != "truth":
            raise
        rois = truth_core_rois(ph)
    else:
        rois = roi.place_rois(vol, seg)
    cal = calibration.calibrate(vol, seg, method="internal", kvp=kvp)
    return rois, cal, seg


def scan_volume(ph, params: dict):
    """The phantom's volume as the pipeline would get it: without the age tag when 'unknown'."""
    from dataclasses import replace

    vol = ph.volume
    if not params.get("_age_known", True):
        vol = replace(vol, meta={k: v for k, v in vol.meta.items() if k != "age"})
    return vol


def truth_by_label(ph) -> dict[int, dict]:
    from OsteoAIBaseLib.levels import label

    return {label(t["level"]): t for t in ph.truth["levels"]}


def phantom_rows(params: dict, masks: str = "pipeline") -> list[dict]:
    """One row per level found: features, the truth, the plain estimate and the phantom settings."""
    from ..phantom import make_phantom

    ph = make_phantom(_phantom_params(params))
    vol = scan_volume(ph, params)
    rois, cal, _ = measure(vol, masks, ph, kvp=params["kvp"])
    truth = truth_by_label(ph)
    feats = volume_level_features(vol, rois.labelmap, sorted(truth), cal, age=vol.meta.get("age"))
    rows = []
    for lab, f in feats.items():
        t = truth[lab]
        if t.get("fracture") or t.get("partial"):
            continue  # a fractured body reads falsely dense by design; the QC flag handles it
        rows.append({
            "label": lab, "features": f, "vbmd": float(t["vbmd_mg_cm3"]),
            "seed": params["seed"], "kvp": params["kvp"], "dose": params["dose"],
        })
    return rows


_FINGERPRINT: str | None = None


def stage_fingerprint() -> str:
    """sha256 (16 hex) of the source of every stage a row depends on, as imported by this process.

    Part of the cache key and of model.json: a change to the phantom, physics, calibration or ROI
    code makes old cached rows invisible instead of silently mixing versions.
    """
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import importlib

        h = hashlib.sha256()
        for name in ("physics", "calibration", "reference_tissues", "roi", "phantom", "phantom.anatomy",
                     "phantom.acquisition", "phantom.params", "vbmd_model.features"):
            try:
                mod = importlib.import_module(f"OsteoAILib.{name}")
            except ImportError:
                h.update(f"{name}:absent".encode())
                continue
            h.update(name.encode())
            h.update(Path(mod.__file__).read_bytes())
        _FINGERPRINT = h.hexdigest()[:16]
    return _FINGERPRINT


def roi_source() -> str:
    try:
        from .. import roi  # noqa: F401
    except ImportError:
        return "phantom-core"
    return "place_rois"


def _cache_key(params: dict, masks: str, fingerprint: str | None = None) -> str:
    blob = json.dumps({"p": params, "m": masks, "r": roi_source(), "f": list(FEATURE_NAMES), "v": CACHE_VERSION,
                       "code": fingerprint or stage_fingerprint()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_table(seeds, cache_dir: str | Path | None, masks: str = "pipeline", log=print,
                fingerprint: str | None = None, grids: str | None = None) -> dict:
    """Rows of many phantoms as arrays {X, y, seed, kvp, dose, label}; per-phantom cache in ``cache_dir``.

    A phantom the stages fail on (e.g. segmentation finds no spine) is logged and skipped.
    ``fingerprint``: read only rows cached by that stage code (see :func:`stage_fingerprint`); a
    phantom not in that cache is skipped, never recomputed with other code.
    ``grids``: None = :func:`sample_params` as drawn (one grid, kVp and dose by chance); "fixed" or
    "varied" = :func:`training_params`.
    """
    cache = Path(cache_dir) if cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    X, y, sd, kv, do, lb = [], [], [], [], [], []
    seeds = list(seeds)
    for n, s in enumerate(seeds):
        params = sample_params(s) if grids is None else training_params(s, grids)
        f = cache / f"{s}-{_cache_key(params, masks, fingerprint)}.json" if cache else None
        if f is not None and f.is_file():
            rows = json.loads(f.read_text())
        elif fingerprint:
            log(f"  phantom {s}: not in the cache of stage code {fingerprint}, skipped")
            continue
        else:
            try:
                rows = phantom_rows(params, masks)
            except Exception as e:  # noqa: BLE001 - one bad phantom must not stop a long run
                log(f"  phantom {s}: skipped ({type(e).__name__}: {e})")
                continue  # not cached: a fixed stage gets another chance on the next run
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
