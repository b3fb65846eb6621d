"""Training samples: coarse normalised image + semantic target + level target, as small .npz files.

Targets (see ai/labels.py): ``sem`` holds BG/BODY/POSTERIOR/DISC/RIB/SACRUM, IGNORE (255) where
the truth is unknown, and VERT_ANY (254) on vertebra voxels whose body/posterior split is not
labelled (the loss then asks only for "body or posterior"). ``lvl`` holds the level channel index
on vertebra voxels of a known level, IGNORE elsewhere.

Real volumes need SimpleITK (read + canonical orientation); phantom samples do not, so they can be
generated on a machine without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from OsteoAISegmentLib.ai import preprocess as pp
from OsteoAISegmentLib.ai.labels import (
    BG,
    BODY,
    DISC,
    IGNORE,
    POSTERIOR,
    RIB,
    SACRUM,
    TS_RIBS,
    level_target,
    totalseg_to_verse,
)
from scipy import ndimage

VERT_ANY = 254
SPACING = 2.0

# name -> (ct, label files, how to read them). Which of these are held out is decided by the
# training command (--real-train / --real-eval), not here.
REAL = {
    "ts-abdomen-3mm": ("ts-abdomen-3mm/ct.nii.gz", "totalseg"),
    "ts-dicom-t11-t12": ("ts-dicom-t11-t12/dicom", "totalseg"),
    "tptbox-lumbar-1.5mm": ("tptbox-lumbar-1.5mm/ct.nii.gz", "verse"),
    "ts-thorax-cta-1.5mm": ("ts-thorax-cta-1.5mm/ct.nii.gz", "mask-T12"),
}


def _ignore_band(sem: np.ndarray, vert: np.ndarray, mm: float, spacing) -> None:
    """Background next to a vertebra is unknown where discs are not labelled: ignore it."""
    d = ndimage.distance_transform_edt(~vert, sampling=spacing)
    sem[(sem == BG) & (d <= mm)] = IGNORE


def real_truth(root: Path, name: str):
    """Canonical volume + VerSe labelmap + semantic target on the volume's own grid.

    Returns (vol, verse, sem) where verse may be partial (mask-T12: only T12 is labelled).
    """
    from OsteoAIBaseLib.imageio import read_volume, to_canonical

    ct_rel, kind = REAL[name]
    folder = root / name
    vol = to_canonical(read_volume(root / ct_rel))

    def lab(fname):
        a = to_canonical(read_volume(folder / fname)).array
        if a.shape != vol.shape:
            raise ValueError(f"{name}/{fname}: label grid differs from the CT")
        return a

    sp_kji = vol.spacing[::-1]
    if kind == "totalseg":
        ts = lab("labels-totalseg-v2.nii.gz")
        verse = totalseg_to_verse(ts)
        sem = np.zeros(vol.shape, np.uint8)
        sem[(ts >= TS_RIBS[0]) & (ts <= TS_RIBS[1])] = RIB
        sem[verse == 26] = SACRUM
        vert = (verse > 0) & (verse != 26)
        bodyfile = folder / "totalseg_vertebrae_body.nii.gz"
        if bodyfile.exists():
            b = lab(bodyfile.name)
            sem[vert & (b == 1)] = BODY
            sem[vert & (b != 1)] = POSTERIOR
            sem[(b == 2) & ~vert] = DISC
        else:
            sem[vert] = VERT_ANY
            _ignore_band(sem, vert, 5.0, sp_kji)
        verse = np.where(verse == 26, 0, verse)
    elif kind == "verse":
        verse = lab("labels-verse.nii.gz").astype(np.int16)
        sub = lab("subregions-verse.nii.gz")
        sem = np.zeros(vol.shape, np.uint8)
        vert = verse > 0
        sem[vert] = POSTERIOR
        sem[vert & np.isin(sub, (49, 50))] = BODY
        _ignore_band(sem, vert, 5.0, sp_kji)
    elif kind == "mask-T12":
        m = lab("mask-T12.nii.gz") > 0
        verse = np.where(m, 19, 0).astype(np.int16)
        sem = np.full(vol.shape, IGNORE, np.uint8)
        sem[m] = VERT_ANY
    else:
        raise ValueError(kind)
    return vol, verse.astype(np.int16), sem


def to_sample(vol, verse: np.ndarray, sem: np.ndarray, spacing: float = SPACING, known_only: bool = False) -> dict:
    """Resample one labelled canonical volume to the coarse training grid."""
    cshape = pp.coarse_shape(vol.shape, vol.spacing, spacing)
    img = pp.normalise(pp.resample_image(vol.array, cshape))
    sem_c = pp.resample_labels(sem, cshape)
    ver_c = pp.resample_labels(verse, cshape)
    lvl = level_target(ver_c)
    return {"image": img.astype(np.float16), "sem": sem_c.astype(np.uint8), "lvl": lvl}


# --- pseudo-labels: unlabelled real CTs segmented by the classical segmenter --------------------

# Real texture the labelled volumes lack (chest, thick slices, PET-CT dose, contrast). They are
# never evaluation volumes, so every cross-validation fold may train on them.
PSEUDO = {
    "tcia-qin-chest-1mm": "tcia-qin-chest-1mm/ct.nii.gz",
    "tcia-cmbcrc-chest-2.5mm": "tcia-cmbcrc-chest-2.5mm/ct.nii.gz",
    "tcia-acrin-petct-chest-4mm": "tcia-acrin-petct-chest-4mm/dicom",
    "tcia-acrin-petct-abdomen-4mm": "tcia-acrin-petct-abdomen-4mm/ct.nii.gz",
    "tcia-cptac-thoracolumbar-5mm": "tcia-cptac-thoracolumbar-5mm/ct.nii.gz",
}
# The classical masks are a dilated column: discs belong to the vertebra above or below and an
# outer rim of soft tissue is included (on ts-abdomen-3mm its voxels missing from the truth have a
# median of 82 HU). So only the bright part of its mask is taught as bone, the rest is unknown.
PSEUDO_BAND_MM = 2.0  # unknown band outside the mask; beyond it (canal, fat, muscle) is background
PSEUDO_BONE_HU = 150.0  # bright voxels off the column: ribs, pelvis, sternum, contrast (unknown class)
PSEUDO_MIN_VERT_HU = 120.0  # mask voxels fainter than this: disc, rim or faint marrow (unknown)
PSEUDO_DISC_MM = 3.0  # around the plane where two classical labels meet: the disc (unknown)
# flags after which the classical level names are not trusted; a sacral segment dropped below L5
# leaves the names above it as they were
_LEVEL_FLAGS = ("label_uncertain", "rib_count", "rib_anchor", "lumbar_count", "no_anchor")


def levels_trusted(qc: list[str]) -> bool:
    for q in qc:
        code = q.split(":", 1)[0].strip()
        if code in _LEVEL_FLAGS and "below L5 dropped" not in q:
            return False
    return True


def pseudo_truth(vol, vertebrae: np.ndarray, bodies: np.ndarray, qc: list[str]):
    """Training targets from a classical segmentation: vertebra voxels are body / posterior
    elements; a band around the column and bright voxels off it are IGNORE (ribs, discs and sacrum
    are not segmented, so they are not background either); level ids are kept only when the
    classical result carries no labelling QC flag. Returns (verse, sem) on the volume's grid."""
    verse = np.asarray(vertebrae).astype(np.int16)
    hu = np.asarray(vol.array)
    sp = vol.spacing[::-1]
    vert = verse > 0
    sem = np.zeros(vol.shape, np.uint8)
    sem[vert] = POSTERIOR
    sem[vert & (np.asarray(bodies) > 0)] = BODY
    sem[~vert & (hu > PSEUDO_BONE_HU)] = IGNORE
    _ignore_band(sem, vert, PSEUDO_BAND_MM, sp)
    sem[vert & (hu < PSEUDO_MIN_VERT_HU)] = IGNORE
    # disc planes: voxels near a voxel of another level
    if vert.any():
        box = ndimage.find_objects(vert.astype(np.int8))[0]  # the column's bounding box: fast
        vb = verse[box]
        # at least one slice either side: with 4-5 mm slices the disc is a single slice given to
        # one of its two vertebrae
        reach = max(PSEUDO_DISC_MM, 1.01 * max(sp))
        near_other = np.zeros(vb.shape, bool)
        for v in np.unique(vb[vb > 0]):
            d = ndimage.distance_transform_edt(~((vb > 0) & (vb != v)), sampling=sp)
            near_other |= (vb == v) & (d <= reach)
        sem[box][near_other] = IGNORE
    if not levels_trusted(qc):
        verse = np.zeros_like(verse)
    return verse, sem


def prepare_pseudo(root: Path, out: Path, names=None, log=print, sources: dict | None = None) -> list[Path]:
    """``pseudo_<name>.npz`` for each unlabelled real CT, labelled by the classical segmenter.
    ``sources`` (name -> path under root) replaces the built-in list of tcia-* volumes."""
    from OsteoAIBaseLib.imageio import read_volume, to_canonical
    from OsteoAISegmentLib.api import segment_spine

    sources = sources or PSEUDO
    paths = []
    for name in names or sources:
        if name not in sources:
            raise ValueError(f"unknown unlabelled volume {name!r}")
        vol = to_canonical(read_volume(Path(root) / sources[name]))
        seg = segment_spine(vol, method="classical")
        verse, sem = pseudo_truth(vol, seg.vertebrae, seg.bodies, seg.qc)
        p = out / f"pseudo_{name}.npz"
        save_sample(p, crop_to_body(to_sample(vol, verse, sem)))
        log(f"{p}: levels {seg.levels if verse.any() else 'not trusted'} qc {seg.qc}")
        paths.append(p)
    return paths


def crop_to_body(s: dict) -> dict:
    """Drop the air and table around the patient, as inference does (ai/preprocess.body_bbox): the
    sample shrinks several-fold and keeps everything a patch can show."""
    bb = pp.body_bbox(s["image"].astype(np.float32))
    return {k: np.ascontiguousarray(v[bb]) for k, v in s.items()}


def save_sample(path: Path, s: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")  # a killed worker leaves no half-written sample
    # image quantised to 1/256 (about 4 HU, far below CT noise): compresses about 2x better
    img = (np.round(np.asarray(s["image"], np.float32) * 256) / 256).astype(np.float16)
    np.savez_compressed(tmp, image=img, sem=s["sem"], lvl=s["lvl"])
    tmp.replace(path)


def load_sample(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in ("image", "sem", "lvl")}


def prepare_real(root: Path, out: Path, names=None) -> list[Path]:
    paths = []
    for name in names or REAL:
        vol, verse, sem = real_truth(root, name)
        p = out / f"real_{name}.npz"
        save_sample(p, to_sample(vol, verse, sem))
        paths.append(p)
    return paths


# --- phantoms ---------------------------------------------------------------------------------


def random_phantom_params(seed: int):
    """Varied anatomy and acquisition for one training phantom (all drawn from ``seed``): level
    range (field of view), grid spacing, kVp, dose, contrast, age, fractures, 11/12/13 rib pairs,
    scanner miscalibration and beam hardening."""
    from OsteoAILib.phantom import PhantomParams

    rng = np.random.default_rng(10_000 + seed)
    order = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
    a = int(rng.integers(0, 11))  # T1..T11
    b = int(rng.integers(max(a + 3, 9), len(order)))  # at least 4 levels, ending T10..L5
    si = float(rng.uniform(0.6, 1.0))
    fov = float(rng.uniform(300, 420))
    fracture = None
    if rng.random() < 0.3:
        fracture = {order[int(rng.integers(a, b + 1))]: float(rng.uniform(0.15, 0.45))}
    params = PhantomParams(
        seed=int(seed),
        kvp=float(rng.choice([80, 100, 120, 140])),
        dose=str(rng.choice(["standard", "standard", "low", "ultralow"])),
        levels=f"{order[a]}-{order[b]}",
        fracture=fracture,
        contrast=bool(rng.random() < 0.4),
        age=float(rng.uniform(30, 90)),
        sex=str(rng.choice(["F", "M"])),
        matrix=int(round(fov / si)),
        spacing=(si, si, float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0]))),
        rib_pairs=int(rng.choice([11, 12, 12, 12, 12, 12, 12, 12, 13])),
        hu_scale=float(rng.uniform(0.96, 1.04)),
        hu_offset=float(rng.uniform(-20, 20)),
        beam_hardening=float(rng.uniform(0.0, 1.0)),
    )
    return params, rng


def phantom_sample(seed: int, spacing: float = SPACING) -> dict:
    from OsteoAILib import phantom as ph_mod

    params, rng = random_phantom_params(seed)
    ph = ph_mod.make_phantom(params)
    return phantom_to_sample(ph, spacing)


def phantom_to_sample(ph, spacing: float = SPACING) -> dict:
    vol = ph.volume
    verse = np.asarray(ph.vertebrae).astype(np.int16)
    bodies = np.asarray(ph.bodies)
    sem = np.zeros(vol.shape, np.uint8)
    tissues = getattr(ph, "tissues", None)
    if tissues is not None:
        codes = tissue_codes(ph)
        t = np.asarray(tissues)
        for name, cls in (("rib", RIB), ("disc", DISC), ("sacrum", SACRUM)):
            for code in codes.get(name, ()):
                sem[t == code] = cls
    vert = verse > 0
    sem[vert] = POSTERIOR
    sem[vert & (bodies > 0)] = BODY
    return to_sample(vol, verse, sem, spacing)


def tissue_codes(ph) -> dict[str, list[int]]:
    """Material ids in the phantom's tissue map for the classes the network learns."""
    from OsteoAILib.phantom import TISSUES

    return {"rib": [TISSUES["rib"], TISSUES["rib_marrow"]], "disc": [TISSUES["disc"]]}
