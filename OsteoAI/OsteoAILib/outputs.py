"""Write a screening's outputs into a folder: staged, verified, committed as a whole with results.json
last, so its presence means the folder is complete (see :mod:`.output_folder`)."""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from OsteoAIBaseLib.atomic import write_text, write_with
from OsteoAIBaseLib.errors import OutputError
from OsteoAIBaseLib.imageio import write_volume

from .output_folder import RESULTS_NAME, _why, check_output_dir, commit, new_staging, output_lock, staged_files
from .pipeline import PipelineOutput
from .segfile import write_seg_nrrd

CSV_COLUMNS = [
    "level", "label", "roi_volume_mm3", "roi_mean_hu", "roi_median_hu", "roi_sd_hu", "vbmd_mg_cm3",
    "vbmd_ci95_low", "vbmd_ci95_high", "vbmd_method", "vbmd_reason", "used_for_diagnosis", "qc",
]  # fmt: skip


def results_csv(out: PipelineOutput) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for lv in out.results.levels:
        lo, hi = lv.vbmd_ci95 if lv.vbmd_ci95 else (None, None)
        w.writerow(
            [
                lv.level,
                lv.label,
                _r(lv.roi_volume_mm3, 0),
                _r(lv.roi_mean_hu),
                _r(lv.roi_median_hu),
                _r(lv.roi_sd_hu),
                _r(lv.vbmd_mg_cm3),
                _r(lo),
                _r(hi),
                lv.vbmd_method,
                lv.vbmd_reason,
                int(lv.used_for_diagnosis),
                " | ".join(lv.qc),
            ]
        )
    return buf.getvalue()


def _r(x, nd=1):
    return "" if x is None else round(float(x), nd)


def radiomics_csv(rows: list[dict]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_outputs(
    out: PipelineOutput,
    out_dir: str | os.PathLike,
    scene: Callable[[PipelineOutput, Path], Path] | None = None,
    extra: Callable[[Path], object] | None = None,
) -> dict[str, Path]:
    """Write the result into ``out_dir`` as a whole: staged, each file verified, then committed with
    ``results.json`` last (see :mod:`.output_folder`). Files of an earlier result never survive beside it.

    ``extra(stage)`` writes further outputs (e.g. the DICOM SEG/SR under ``dicom/``) into the staging
    folder, so they are verified, listed in results.json and replaced together with the rest.
    ``scene(out, stage) -> Path`` writes scene.mrml there too: the entry point passes the MRML bridge's
    ``write_scene``, so the core never imports slicer.
    """
    d = check_output_dir(out_dir).resolve()
    with output_lock(d):
        stage = new_staging(d)
        try:
            files = _write_staged(out, stage, scene)
            if extra is not None:
                extra(stage)
            hashes = {rel: verify_file(stage / rel, out.volume.shape) for rel in staged_files(stage)}
            results = out.results.to_dict()
            results["files"] = hashes
            commit(stage, d, results)
        except OSError as e:
            raise OutputError(f"cannot write the results: {_why(e)}") from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    files = {k: d / v.relative_to(stage) for k, v in files.items()}
    files["json"] = d / RESULTS_NAME
    return files


def _write_staged(out: PipelineOutput, d: Path, scene) -> dict[str, Path]:
    files: dict[str, Path] = {}
    # int16 already from every segmenter: no copy of a CT-sized array
    files["vertebrae"] = write_volume(out.volume, d / "vertebrae.nii.gz", out.vertebrae.astype("int16", copy=False))
    files["rois"] = write_volume(out.volume, d / "trabecular_rois.nii.gz", out.rois.astype("int16", copy=False))
    files["segmentation"] = write_seg_nrrd(out.volume, out.vertebrae, d / "vertebrae.seg.nrrd")
    files["roi_segmentation"] = write_seg_nrrd(out.volume, out.rois, d / "trabecular_rois.seg.nrrd", roi=True)
    for im in out.key_images:
        png = d / "key_images" / f"{im.name}.png"
        files[f"key_image:{im.name}"] = write_with(png, lambda p, b=im.png: p.write_bytes(b))
    files["csv"] = write_text(d / "results.csv", results_csv(out))
    if out.radiomics:
        files["radiomics"] = write_text(d / "radiomics.csv", radiomics_csv(out.radiomics))
    if scene is not None:
        files["scene"] = scene(out, d)
    return files


def verify_file(path: Path, shape=None) -> str:
    """Read a written file back before it is committed; its sha256. OSError when it is not whole.

    A full disk does not always make a writer fail: ITK has renamed 0-byte labelmaps into place.
    """
    size = path.stat().st_size
    if size == 0:
        raise OSError(errno.ENOSPC, f"{path.name} was written empty (disk full?)")
    name = path.name.lower()
    try:
        if name.endswith((".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha")):
            import SimpleITK as sitk

            img = sitk.ReadImage(str(path))  # decompresses the whole file: a truncated one fails here
            if name.endswith(".nii.gz") and shape is not None and tuple(reversed(img.GetSize()))[:3] != tuple(shape):
                raise ValueError(f"size {img.GetSize()} is not the input's")
        elif name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
        elif name.endswith((".csv", ".tsv", ".mrml")):
            path.read_text(encoding="utf-8")
        elif name.endswith(".dcm"):
            import pydicom

            ds = pydicom.dcmread(path)  # a truncated file fails here
            if "PixelData" in ds and len(ds.PixelData) == 0:
                raise ValueError("no pixel data")
        elif name.endswith(".png"):
            data = path.read_bytes()
            if not (data.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in data[-12:]):
                raise ValueError("not a whole PNG")
    except (RuntimeError, ValueError, UnicodeDecodeError, EOFError, OSError) as e:
        raise OSError(errno.EIO, f"{path.name} does not read back ({str(e).strip()[:80]}): disk full?") from None
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        return hashlib.sha256(f.read()).hexdigest()
