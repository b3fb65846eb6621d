"""The classical segmenter on every real CT with reference landmarks in ../shared/data.

Each scan is checked against the readers' landmarks (OsteoAISegmentLib.landmark_scoring): never a
wrong level name without `label_uncertain`, an uncertain low-confidence scan, few `fracture` flags
where no reader saw a fracture, and identification / ROI placement at least at the level measured
when this test was written (Testing/benchmarks/real_ct.py prints the full table; the issue's targets,
>= 97% identification and >= 99% ROI voxels inside one body, are higher than these floors on the
scans where they are not met yet).
"""

from __future__ import annotations

import numpy as np
import pytest

# scan -> (CT file, min identified fraction of levels fully in view, min share of ROI voxels in one body,
#          max fracture flags on reference levels)
FLOORS = {  # measured 2026-11-30 (each scan with an anchor 100% identified, ROI in one body 99.3%): floors
    "tcia-qin-chest-1mm": ("ct.nii.gz", 0.9, 0.99, 1),
    "tcia-ricord-chest-1.25mm": ("ct.nii.gz", 0.9, 0.97, 1),
    "tcia-cmbcrc-chest-2.5mm": ("ct.nii.gz", 0.9, 0.99, 1),
    "tcia-lungdx-chest-5mm": ("ct.nii.gz", 0.9, 0.98, 1),
    "tcia-lungdx-chest-5mm:lung-kernel": ("ct-lung-kernel.nii.gz", 0.9, 0.98, 1),
    # no rib end, no sacrum: named from the carina (the trachea enters 12 mm above it through the top
    # edge) and body size, a weak pair (label_uncertain is what this scan must say; readers themselves
    # split T4-T11 / T5-T12)
    "tcia-acrin-petct-chest-4mm": ("dicom", 0.9, 0.98, 1),
    "tcia-cptac-thoracolumbar-5mm": ("ct.nii.gz", 1.0, 0.88, 0),
    "tcia-acrin-petct-abdomen-4mm": ("ct.nii.gz", 1.0, 0.99, 1),
}


def _run(folder, ct):
    from OsteoAIBaseLib.imageio import read_volume, to_canonical
    from OsteoAILib import roi
    from OsteoAILib.pipeline import level_context
    from OsteoAISegmentLib.api import segment_spine

    canonical = to_canonical(read_volume(folder / ct))
    seg = segment_spine(canonical, method="classical")
    rois = roi.place_rois(canonical, seg)
    level_qc, _ = level_context(canonical, seg, rois, None)
    return canonical, seg, rois, level_qc


@pytest.mark.parametrize("scan", sorted(FLOORS))
def test_real_scan_against_landmarks(shared_data, scan):
    from OsteoAISegmentLib.landmark_scoring import load_landmarks, score_scan

    folder = shared_data / scan.split(":")[0]
    ct, min_id, min_in_body, max_fractures = FLOORS[scan]
    if not (folder / "landmarks.json").is_file() or not (folder / ct).exists():
        pytest.skip(f"{scan} is not in {shared_data}")
    canonical, seg, rois, level_qc = _run(folder, ct)
    ref = load_landmarks(folder / "landmarks.json")
    s = score_scan(ref, canonical, seg.bodies, rois.labelmap, seg.qc, level_qc)
    assert s["wrong_unflagged"] == 0, f"wrong level names without label_uncertain: {s['levels']}"
    assert not s["missing_uncertain_flag"], "a low-confidence scan must say its names are uncertain"
    assert s["fracture_flags"] <= max_fractures
    assert s["n_full"] and s["n_identified"] / s["n_full"] >= min_id, s["levels"]
    vox = [(x["inside_body"], x["voxels"]) for x in s["rois"] if x["inside_body"] is not None]
    inside = sum(f * n for f, n in vox) / max(sum(n for _f, n in vox), 1)
    assert inside >= min_in_body, s["rois"]
    # every label is a real vertebra name, cranial -> caudal without gaps
    names = seg.levels
    assert names == sorted(names, key=lambda v: list(range(1, 25)).index(v))
    assert np.all(np.diff([list(range(1, 25)).index(v) for v in names]) == 1)
