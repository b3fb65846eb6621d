"""Write a screening's outputs into a folder. Every file is written atomically, and results.json comes
last, so its presence means the folder is complete."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .atomic import write_json, write_text, write_with
from .imageio import write_volume
from .pipeline import PipelineOutput
from .segfile import write_seg_nrrd

CSV_COLUMNS = [
    "level", "label", "roi_volume_mm3", "roi_mean_hu", "roi_median_hu", "roi_sd_hu", "vbmd_mg_cm3",
    "vbmd_ci95_low", "vbmd_ci95_high", "vbmd_method", "used_for_diagnosis", "qc",
]  # fmt: skip


def results_csv(out: PipelineOutput) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for lv in out.results.levels:
        lo, hi = lv.vbmd_ci95 if lv.vbmd_ci95 else (None, None)
        w.writerow([lv.level, lv.label, _r(lv.roi_volume_mm3, 0), _r(lv.roi_mean_hu), _r(lv.roi_median_hu),
                    _r(lv.roi_sd_hu), _r(lv.vbmd_mg_cm3), _r(lo), _r(hi), lv.vbmd_method,
                    int(lv.used_for_diagnosis), " | ".join(lv.qc)])
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


def write_outputs(out: PipelineOutput, out_dir: str | os.PathLike, scene: bool = False) -> dict[str, Path]:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["vertebrae"] = write_volume(out.volume, d / "vertebrae.nii.gz", out.vertebrae.astype("int16"))
    files["rois"] = write_volume(out.volume, d / "trabecular_rois.nii.gz", out.rois.astype("int16"))
    files["segmentation"] = write_seg_nrrd(out.volume, out.vertebrae, d / "vertebrae.seg.nrrd")
    files["roi_segmentation"] = write_seg_nrrd(out.volume, out.rois, d / "trabecular_rois.seg.nrrd", roi=True)
    for im in out.key_images:
        png = d / "key_images" / f"{im.name}.png"
        files[f"key_image:{im.name}"] = write_with(png, lambda p, b=im.png: p.write_bytes(b))
    files["csv"] = write_text(d / "results.csv", results_csv(out))
    if out.radiomics:
        files["radiomics"] = write_text(d / "radiomics.csv", radiomics_csv(out.radiomics))
    if scene:
        from .mrml import write_scene  # needs slicer-core: imported only when a scene is asked for

        files["scene"] = write_scene(out, d)
    files["json"] = write_json(d / "results.json", out.results.to_dict())
    return files
