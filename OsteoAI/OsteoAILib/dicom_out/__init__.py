"""DICOM outputs of a screening, for a PACS: a SEG of the vertebrae, a SEG of the trabecular ROIs, a TID 1500
SR with every level's numbers, the diagnosis, calibration and QC flags (referencing the ROI segments), and
the key images as Secondary Capture. All in the input's study (patient and study modules copied from the
screened series by highdicom), each in a new series; UIDs derived from the source instances.

A NIfTI/NRRD input has no study: a new one is made, holding the volume as a CT series (``dicom/ct/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from OsteoAIBaseLib.errors import OsteoAIError

FILES = {"seg_vertebrae": "seg_vertebrae.dcm", "seg_rois": "seg_trabecular_rois.dcm", "sr": "sr.dcm"}


def write_dicom_outputs(out, out_dir: str | os.PathLike, input_path: str | os.PathLike) -> dict[str, Path]:
    """Write ``out_dir``/dicom/: SEGs, SR and key images (and ct/ for a non-DICOM input)."""
    from OsteoAIBaseLib.atomic import write_with

    from . import source
    from .common import software_version
    from .key_images import build_key_images
    from .seg import build_seg
    from .sr import build_sr
    from .uids import key_for

    d = Path(out_dir) / "dicom"
    d.mkdir(parents=True, exist_ok=True)
    if Path(input_path).is_dir() and out.volume.meta.get("source") == "dicom":
        src = source.from_dicom_folder(input_path)
    else:
        src = source.from_volume(out.volume, d, str(input_path))
    key = key_for([str(ds.SOPInstanceUID) for ds in src.datasets], software_version())
    segmenter = out.results.software.get("segmenter", "")
    seg_v, _ = build_seg(out.vertebrae, out.volume, src, key, roi=False, segmenter=segmenter)
    seg_r, roi_segments = build_seg(out.rois, out.volume, src, key, roi=True, segmenter=segmenter)
    _check_lined_up(out, seg_v)
    evidence = list(src.datasets) + [s for s in (seg_v, seg_r) if s is not None]
    sr = build_sr(out.results, key, evidence, seg_r, roi_segments, str(src.datasets[0].SeriesInstanceUID))
    datasets = {"seg_vertebrae": seg_v, "seg_rois": seg_r, "sr": sr}
    for n, sc in enumerate(build_key_images(out.key_images, src.datasets[0], key), start=1):
        name = out.key_images[n - 1].name
        datasets[f"key_image:{name}"] = sc
    files: dict[str, Path] = {}
    for name, ds in datasets.items():
        if ds is None:
            continue
        _drop_incomplete_trial_subject(ds)
        fname = FILES.get(name) or f"key_image_{name.split(':', 1)[1]}.dcm"
        files[name] = write_with(d / fname, lambda p, ds=ds: ds.save_as(p, enforce_file_format=True))
    for p in src.written or []:
        files[f"ct:{p.name}"] = p
    return files


# Clinical Trial Subject module (optional in SEG, SR and SC IODs), copied from the source by highdicom.
_TRIAL_SUBJECT = (
    "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID",
    "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID",
    "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    "ClinicalTrialProtocolEthicsCommitteeName",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
)


def _drop_incomplete_trial_subject(ds) -> None:
    """De-identified collections often keep the module with an empty subject ID (a Type 1C error in the
    source); copied as is it would make our objects invalid too, so the incomplete module is left out."""
    if "ClinicalTrialSubjectID" in ds and not ds.ClinicalTrialSubjectID and not ds.get("ClinicalTrialSubjectReadingID"):
        for keyword in _TRIAL_SUBJECT:
            if keyword in ds:
                delattr(ds, keyword)


def _check_lined_up(out, seg) -> None:
    """Every labelled voxel must land in a frame of the source: a SEG that misses voxels would be wrong."""
    if seg is None:
        return
    n_frames = int(seg.NumberOfFrames)
    if n_frames == 0:
        raise OsteoAIError("DICOM SEG: no labelled voxel lies on the source series' frames")
