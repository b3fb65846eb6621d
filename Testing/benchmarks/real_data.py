"""Run the pipeline on every real CT in ../shared/data and check it against the labels there.

Prints, per volume: levels found, diagnosis, errors; for labelled volumes, per labelled vertebra fully
in view: the predicted label at its centroid, and the share of ROI voxels inside the true vertebra.

Run: .venv/bin/python Testing/benchmarks/real_data.py [--segmenter classical] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

# TotalSegmentator v2 "total" ids -> VerSe ids (T1 = 8 ... L5 = 24)
TOTALSEG_TO_VERSE = {43 - n: 8 + n for n in range(12)} | {31 - n: 20 + n for n in range(5)}
CASES = {
    "ts-abdomen-3mm": ("ct.nii.gz", "labels-totalseg-v2.nii.gz", "totalseg"),
    "ts-dicom-t11-t12": ("dicom", "labels-totalseg-v2.nii.gz", "totalseg"),
    "ts-thorax-cta-1.5mm": ("ct.nii.gz", "mask-T12.nii.gz", "T12"),
    "tptbox-lumbar-1.5mm": ("ct.nii.gz", "labels-verse.nii.gz", "verse"),
    "tcia-qin-chest-1mm": ("ct.nii.gz", None, None),
    "tcia-cmbcrc-chest-2.5mm": ("ct.nii.gz", None, None),
    "tcia-acrin-petct-chest-4mm": ("dicom", None, None),
    "tcia-acrin-petct-abdomen-4mm": ("ct.nii.gz", None, None),
    "tcia-cptac-thoracolumbar-5mm": ("ct.nii.gz", None, None),
}


def true_labels(path: Path, kind: str, ref) -> np.ndarray:
    """Reference labels resampled onto the CT grid, as VerSe ids."""
    import SimpleITK as sitk
    from OsteoAIBaseLib.imageio import volume_to_sitk

    img = sitk.ReadImage(str(path))
    ref_img = volume_to_sitk(ref, np.zeros(ref.shape, np.int16))
    img = sitk.Resample(img, ref_img, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    lab = sitk.GetArrayFromImage(img).astype(np.int16)
    if kind == "totalseg":
        out = np.zeros_like(lab)
        for ts, vs in TOTALSEG_TO_VERSE.items():
            out[lab == ts] = vs
        return out
    if kind == "T12":
        return np.where(lab > 0, 19, 0).astype(np.int16)
    return lab


def fully_in_view(mask: np.ndarray) -> bool:
    from OsteoAILib.segmenter_training.evaluate import touches_edge

    return not touches_edge(mask)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--segmenter", default="auto")
    args = ap.parse_args()
    from OsteoAIBaseLib.imageio import read_volume
    from OsteoAIBaseLib.levels import NAMES
    from OsteoAILib.pipeline import PipelineOptions, run_pipeline

    data = Path(args.data)
    n_err = n_lab = n_lab_ok = 0
    inside_all = []
    for case, (ct, labels, kind) in CASES.items():
        folder = data / case
        if not folder.exists():
            print(f"{case}: absent")
            continue
        t0 = time.perf_counter()
        try:
            vol = read_volume(folder / ct)
            out = run_pipeline(vol, PipelineOptions(segmenter=args.segmenter))
        except Exception as e:
            n_err += 1
            print(f"{case}: ERROR {type(e).__name__}: {e}")
            traceback.print_exc(limit=2)
            continue
        r = out.results
        found = ",".join(lv.level for lv in r.levels)
        d = r.diagnosis
        dtxt = f"{d.category} {d.vbmd_mg_cm3:.0f}" if d.category else "no diagnosis"
        print(f"{case}: {time.perf_counter() - t0:.1f}s levels [{found}] {dtxt}; qc: {'; '.join(r.qc)[:150]}")
        if not labels:
            continue
        truth = true_labels(folder / labels, kind, vol)
        for lab in sorted(int(x) for x in np.unique(truth) if x in NAMES):
            m = truth == lab
            if not fully_in_view(m):
                print(f"    {NAMES[lab]}: cut by the field of view (not scored)")
                continue
            n_lab += 1
            pred = out.vertebrae[m]
            pred_lab = int(np.bincount(pred[pred > 0]).argmax()) if (pred > 0).any() else 0
            ok = pred_lab == lab
            n_lab_ok += ok
            roi = out.rois == pred_lab if pred_lab else np.zeros_like(m)
            inside = float((roi & m).sum() / roi.sum()) if roi.sum() else float("nan")
            if roi.sum():
                inside_all.append(inside)
            dice = 2 * ((out.vertebrae == lab) & m).sum() / ((out.vertebrae == lab).sum() + m.sum())
            print(
                f"    {NAMES[lab]}: predicted {NAMES.get(pred_lab, 'none')} {'OK' if ok else 'WRONG'}; "
                f"Dice {dice:.2f}; ROI inside true vertebra {inside * 100:.1f}%"
            )
    print(
        f"\nSummary: {n_err} volumes failed; labels right {n_lab_ok}/{n_lab} for vertebrae fully in view; "
        f"ROI voxels inside the true vertebra: min {min(inside_all, default=float('nan')) * 100:.1f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
