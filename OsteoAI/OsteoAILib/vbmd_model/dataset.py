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
# What real CT shows and the legacy phantom did not (Testing/benchmarks/phantom_realism.py measures
# both on ../shared/data): trabecular ROI SD 30-100 HU from a fine microstructure, soft to lung
# kernels, 0.7-3 mm pixels and 1-5 mm slices, bodies 240-330 mm across, reference tissues that miss
# the table by up to ~7 HU, streaks at low dose. grids="realistic" draws these per phantom.
REALISM = {
    "kernel": {"soft": 0.35, "standard": 0.45, "lung": 0.20},
    "texture_hu": (35.0, 110.0),  # microstructure SD before blur (phantom.acquisition.Microstructure)
    "texture_mm": (1.0, 2.5),  # shortest wavelength; the longest is 4x (longer ones move ROI means)
    # Real noise, scaled to the phantom's reference voxel (0.7 x 0.7 x 1 mm), is 22-87 HU with soft or
    # standard kernels and ~130 with a lung kernel, where the dose classes give 10-40: patients larger
    # than the phantom, dose modulation, and fat and muscle that are not homogeneous all add to what
    # the reference-tissue SD measures. The dose x kernel x habitus noise is multiplied by a
    # log-uniform factor, and the result kept within the real range (beyond it, air clipped at
    # -1024 HU and failing reference ROIs break the calibration, which no real scan here shows).
    "noise_scale": (1.0, 3.5),
    "reference_noise_hu": (15.0, 140.0),
    "streaks_probability": {"standard": 0.1, "low": 0.4, "ultralow": 0.7},
    "streaks_hu": (5.0, 30.0),
    "body_scale": (0.85, 1.3),  # 1 = the small adult; noise grows with the path through the body
    "fat_mm": (5.0, 40.0),
    # Patients' fat, muscle and blood against the physics table: (mean, SD) HU. The means reproduce what
    # the internal calibration leaves on the real scans with all four references (../shared/data, 6
    # series: residual fat +4.8, muscle -4.3, blood -1.3, air -1.0 HU; phantom_realism.py prints them):
    # subcutaneous fat reads above pure adipose (septa, water), paraspinal muscle below pure muscle
    # (fatty infiltration), aortic blood a little below (patients' lower haematocrit). A shift common to
    # all three leaves no residual, so the real scans cannot show it: the means carry none (the
    # smallest offsets with those residuals). The SDs are wider than the real residuals' (2.9, 3.2, 2.0).
    "tissue_offsets_hu": {"fat": (5.3, 4.0), "muscle": (-3.8, 3.0), "blood": (-0.8, 3.0)},
    "pixel_mm": ((0.6, 1.0), (1.0, 2.4)),  # half the phantoms in each: real scans are mostly < 1 mm
    "slice_mm": (0.6, 5.0),
}
LEVELS = ("T11", "T12", "L1", "L2")
CACHE_VERSION = 2


def sample_params(seed: int) -> dict:
    """PhantomParams keyword arguments for phantom ``seed`` (deterministic in the seed)."""
    rng = np.random.default_rng([CACHE_VERSION, int(seed)])
    lo, hi = RANGES["vbmd_mg_cm3"]
    base = float(rng.uniform(lo, hi))
    # thoracic a little denser than lumbar, plus a level-to-level scatter, as in real spines
    bmd = {
        name: round(float(np.clip(base + 1.5 * (2 - i) + rng.normal(0.0, 4.0), 5.0, 300.0)), 2)
        for i, name in enumerate(LEVELS)
    }
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


def sample_realism(seed: int) -> dict:
    """PhantomParams keywords of the realistic training phantoms (kernel, microstructure, streaks,
    habitus, tissue composition, grid): their own stream, so :func:`sample_params` is unchanged."""
    rng = np.random.default_rng([CACHE_VERSION, int(seed), 2])
    r = REALISM
    kernels = list(r["kernel"])
    body = round(float(rng.uniform(*r["body_scale"])), 3)
    lo, hi = r["pixel_mm"][int(rng.random() < 0.5)]
    px = round(float(rng.uniform(lo, hi)) / 0.02) * 0.02
    sl = round(float(rng.uniform(*r["slice_mm"])) / 0.05) * 0.05
    fov = 2 * 151.0 * body / 0.94 + 10.0  # the widest outline (anatomy._AX) plus a margin
    out = {
        "kernel": str(rng.choice(kernels, p=[r["kernel"][k] for k in kernels])),
        "texture_hu": round(float(rng.uniform(*r["texture_hu"])), 1),
        "texture_mm": round(float(rng.uniform(*r["texture_mm"])), 2),
        "body_scale": body,
        "_noise_u": float(np.exp(rng.uniform(*np.log(r["noise_scale"])))),
        "fat_mm": round(float(rng.uniform(*r["fat_mm"])), 1),
        "tissue_offsets_hu": {k: round(float(rng.normal(m, sd)), 2) for k, (m, sd) in r["tissue_offsets_hu"].items()},
        "matrix": 2 * int(round(fov / px / 2)),
        "spacing": (round(px, 2), round(px, 2), round(sl, 2)),
        "levels": SMALL_GRID["levels"],
        "_streaks_u": float(rng.random()),
        "_streaks_hu": round(float(rng.uniform(*r["streaks_hu"])), 1),
    }
    return out


def _with_realism(p: dict, seed: int) -> dict:
    from ..phantom import PhantomParams
    from ..phantom.acquisition import noise_sigma

    real = sample_realism(seed)
    u, amp = real.pop("_streaks_u"), real.pop("_streaks_hu")
    real["streaks_hu"] = amp if u < REALISM["streaks_probability"][p["dose"]] else 0.0
    # noise at the reference voxel before the extra factor: dose x kernel x habitus
    ref = PhantomParams(dose=p["dose"], kernel=real["kernel"], body_scale=real["body_scale"], spacing=(0.7, 0.7, 1.0))
    base = noise_sigma(ref)
    want = float(np.clip(base * real.pop("_noise_u"), *REALISM["reference_noise_hu"]))
    real["noise_scale"] = round(want / base, 3)
    return {**p, **real}


def training_params(seed: int, grids: str = "realistic") -> dict:
    """Parameters of training phantom ``seed``: :func:`sample_params` with kVp and dose cycled over
    the seeds (every kVp x dose cell equally often, instead of by chance) and, for
    ``grids="varied"``, the grid of :func:`sample_grid`; for ``grids="realistic"`` (the default) the
    kernel, microstructure, streaks, habitus, tissue composition and grid of :func:`sample_realism`."""
    p = sample_params(seed)
    kvps, doses = RANGES["kvp"], RANGES["dose"]
    p["kvp"] = float(kvps[int(seed) % len(kvps)])
    p["dose"] = str(doses[(int(seed) // len(kvps)) % len(doses)])
    if grids == "varied":
        p.update(sample_grid(seed))
    elif grids == "realistic":
        p = _with_realism(p, seed)
    elif grids != "fixed":
        raise ValueError(f"grids must be 'fixed', 'varied' or 'realistic', not {grids!r}")
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
        vertebrae=ph.vertebrae.astype(np.int16),
        bodies=ph.bodies.astype(np.int16),
        levels=sorted(present, key=ORDER.index, reverse=True),
        segmenter="phantom-truth",
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
        rows.append(
            {
                "label": lab,
                "features": f,
                "vbmd": float(t["vbmd_mg_cm3"]),
                "seed": params["seed"],
                "kvp": params["kvp"],
                "dose": params["dose"],
            }
        )
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
        for name in (
            "physics",
            "calibration",
            "reference_tissues",
            "roi",
            "phantom",
            "phantom.anatomy",
            "phantom.acquisition",
            "phantom.params",
            "vbmd_model.features",
        ):
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
    blob = json.dumps(
        {
            "p": params,
            "m": masks,
            "r": roi_source(),
            "f": list(FEATURE_NAMES),
            "v": CACHE_VERSION,
            "code": fingerprint or stage_fingerprint(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build_one(job) -> tuple[int, list[dict] | None, str]:
    """(seed, rows or None, error) of one phantom: the unit of work of a parallel build."""
    seed, params, masks = job
    try:
        rows = phantom_rows(params, masks)
    except Exception as e:
        return seed, None, f"{type(e).__name__}: {e}"
    for r in rows:
        r["features"] = [float(v) for v in r["features"]]
    return seed, rows, ""


def prebuild(
    seeds, cache_dir: str | Path, masks: str = "pipeline", grids: str | None = None, workers: int = 2, log=print
) -> int:
    """Build the phantoms of ``seeds`` not yet in ``cache_dir`` with ``workers`` processes; returns how
    many were built. :func:`build_table` then reads them from the cache."""
    from concurrent.futures import ProcessPoolExecutor

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    jobs = []
    for s in seeds:
        params = sample_params(s) if grids is None else training_params(s, grids)
        if not (cache / f"{s}-{_cache_key(params, masks)}.json").is_file():
            jobs.append((s, params, masks))
    done = 0
    with ProcessPoolExecutor(max_workers=max(1, int(workers))) as pool:
        for seed, rows, err in pool.map(_build_one, jobs, chunksize=4):
            if rows is None:
                log(f"  phantom {seed}: skipped ({err})")
                continue
            params = next(j[1] for j in jobs if j[0] == seed)
            (cache / f"{seed}-{_cache_key(params, masks)}.json").write_text(json.dumps(rows))
            done += 1
            if done % 50 == 0:
                log(f"  built {done}/{len(jobs)} phantoms")
    return done


def build_table(
    seeds,
    cache_dir: str | Path | None,
    masks: str = "pipeline",
    log=print,
    fingerprint: str | None = None,
    grids: str | None = None,
) -> dict:
    """Rows of many phantoms as arrays {X, y, seed, kvp, dose, label}; per-phantom cache in ``cache_dir``.

    A phantom the stages fail on (e.g. segmentation finds no spine) is logged and skipped.
    ``fingerprint``: read only rows cached by that stage code (see :func:`stage_fingerprint`); a
    phantom not in that cache is skipped, never recomputed with other code.
    ``grids``: None = :func:`sample_params` as drawn (one grid, kVp and dose by chance); "fixed",
    "varied" or "realistic" = :func:`training_params`.
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
            except Exception as e:
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
