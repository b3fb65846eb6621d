"""pyradiomics first-order and texture features of each trabecular ROI (rows of ``radiomics.csv``).

One extractor, configured from ``resources/radiomics_params.yaml``, runs once per level on a
binary mask of that level's ROI. Every row carries its provenance (pyradiomics version, the
params file and its sha256) so a CSV can be traced to the settings that made it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from OsteoAIBaseLib import levels as levels_mod
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.volume import Volume

PARAMS_PATH = Path(__file__).resolve().parent / "resources" / "radiomics_params.yaml"
FAMILIES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
# Leading columns of every row; feature columns follow, named "<family>_<feature>".
ID_COLUMNS = ("level", "label", "n_voxels", "spacing_mm", "pyradiomics_version", "params_file", "params_sha256")


def _params_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _to_sitk(array: np.ndarray, vol: Volume, dtype):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))
    img.SetSpacing(vol.spacing)
    img.SetOrigin(vol.origin)
    img.SetDirection(tuple(float(x) for x in np.asarray(vol.direction).ravel()))
    return img


def extract(
    vol: Volume,
    roi_labelmap: np.ndarray | Volume,
    labels: Iterable[int] | None = None,
    params_path: str | Path | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict]:
    """Features of each ROI label in ``labels`` (default: every non-zero label present).

    ``vol`` holds HU (raw scanner HU: texture is computed on what the scanner measured; the
    calibrated vBMD lives in results.json). Returns one dict per level, in ``labels`` order;
    a level whose ROI is missing or too small gets a row with ``qc`` set and no features.
    """
    import radiomics
    from radiomics import featureextractor

    params = Path(params_path) if params_path else PARAMS_PATH
    if not params.is_file():
        raise InputError(f"radiomics params file not found: {params}")
    rois = roi_labelmap.array if isinstance(roi_labelmap, Volume) else np.asarray(roi_labelmap)
    if rois.shape != vol.array.shape:
        raise InputError(f"ROI labelmap shape {rois.shape} differs from the volume's {vol.array.shape}")
    if labels is None:
        labels = [int(v) for v in np.unique(rois) if v != 0]
    labels = [int(v) for v in labels]

    # pyradiomics logs every feature class at INFO; keep the terminal for the pipeline's progress.
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(str(params))
    image = _to_sitk(vol.array, vol, np.float32)
    provenance = {
        "pyradiomics_version": str(radiomics.__version__),
        "params_file": params.name,
        "params_sha256": _params_sha256(params),
    }
    min_voxels = int(extractor.settings.get("minimumROISize") or 1)

    rows: list[dict] = []
    for n, lab in enumerate(labels):
        mask = rois == lab
        row = {
            "level": levels_mod.NAMES.get(lab, str(lab)),
            "label": lab,
            "n_voxels": int(mask.sum()),
            "spacing_mm": "x".join(f"{s:g}" for s in vol.spacing),
            **provenance,
        }
        if row["n_voxels"] < min_voxels:
            row["qc"] = f"radiomics_skipped: ROI has {row['n_voxels']} voxels (< {min_voxels})"
            rows.append(row)
            continue
        result = extractor.execute(image, _to_sitk(mask, vol, np.uint8), label=1)
        for key, value in result.items():
            if key.startswith("diagnostics_"):
                continue
            # "original_glcm_Contrast" -> "glcm_Contrast"
            name = key.split("_", 1)[1] if key.startswith("original_") else key
            row[name] = float(np.asarray(value))
        rows.append(row)
        if progress:
            progress((n + 1) / len(labels), f"radiomics {row['level']}")
    return rows


def to_csv(rows: list[dict]) -> str:
    """CSV text with the id/provenance columns first, then the union of feature columns, sorted."""
    extra = sorted({k for r in rows for k in r} - set(ID_COLUMNS) - {"qc"})
    cols = list(ID_COLUMNS) + (["qc"] if any("qc" in r for r in rows) else []) + extra
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in cols})
    return buf.getvalue()


def write_csv(rows: list[dict], path: str | Path) -> Path:
    from OsteoAIBaseLib.atomic import write_text

    return write_text(path, to_csv(rows))
