"""Write a CT volume as a DICOM CT series (pydicom), one file per slice of its k axis.

Pixels are stored unsigned with RescaleIntercept -1024 (as many scanners do) so that readers
must apply the rescale tags. UIDs are derived from a key (for the phantom: its parameters), so the
same volume gets the same UIDs. No real names: the phantom's patient is "OsteoAI^Phantom".
``dicom_out`` uses :func:`ct_slices` too, to give a NIfTI/NRRD input a series its SEG can reference.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
INTERCEPT = -1024


def uid(key: str, *parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[key, *map(str, parts)])


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def ct_slices(
    vol,
    key: str,
    patient_name: str,
    patient_id: str,
    study_description: str,
    series_description: str,
    manufacturer: str,
    model: str,
) -> Iterator:
    """One CT Image dataset per k slice of ``vol`` (any orientation: IOP/IPP follow its direction)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = vol.meta
    arr = vol.array
    nk, nj, ni = arr.shape
    si, sj, sk = vol.spacing
    study, series, frame = uid(key, "study"), uid(key, "series"), uid(key, "frame")
    for k in range(nk):
        sop = uid(key, "sop", k)
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        fm.MediaStorageSOPInstanceUID = sop
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = fm
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.Modality = "CT"
        ds.Manufacturer = manufacturer
        ds.ManufacturerModelName = model
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""  # Type 2: present, empty
        ds.PatientSex = {"M": "M", "F": "F"}.get(str(meta.get("sex") or ""), "O")
        if meta.get("age") is not None:
            ds.PatientAge = f"{int(round(meta['age'])):03d}Y"
        ds.StudyDate = ds.SeriesDate = "20260101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.ReferringPhysicianName = ""
        ds.AccessionNumber = ""
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"  # Type 2C: required for CT; the usual chest CT position
        ds.PositionReferenceIndicator = ""
        ds.StudyDescription = study_description
        ds.SeriesDescription = series_description
        ds.BodyPartExamined = "CHEST"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = f"{float(meta.get('kvp') or 120):g}"
        if meta.get("ctdivol") is not None:
            ds.CTDIvol = float(meta["ctdivol"])
            # CTDIvol is uninterpretable without the phantom it refers to (32 cm body phantom for a torso).
            ds.CTDIPhantomTypeCodeSequence = [_code("113691", "DCM", "IEC Body Dosimetry Phantom")]
        ds.ConvolutionKernel = meta.get("kernel") or "STANDARD"
        ds.SliceThickness = f"{sk:g}"
        ds.SpacingBetweenSlices = f"{sk:g}"
        ds.PixelSpacing = [f"{sj:g}", f"{si:g}"]  # row spacing (between rows), column spacing
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in (*vol.direction[:, 0], *vol.direction[:, 1])]
        pos = vol.index_to_lps((k, 0, 0))
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.SliceLocation = f"{pos[2]:.4f}"
        if meta.get("contrast"):
            ds.ContrastBolusAgent = "IODINE (simulated)"
        ds.Rows, ds.Columns = nj, ni
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = str(INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = (np.rint(arr[k]).astype(np.int32) - INTERCEPT).clip(0, 65535).astype("<u2").tobytes()
        yield ds


def write_series(datasets, folder: Path) -> Path:
    """Write datasets as CT00001.dcm ... into ``folder``, replacing it whole (a reader never sees half)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for n, ds in enumerate(datasets, start=1):
            ds.save_as(tmp / f"CT{n:05d}.dcm", enforce_file_format=True)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_dicom_series(ph, folder: Path) -> Path:
    meta = ph.volume.meta
    key = hashlib.sha256(json.dumps(ph.truth.get("params", {}), sort_keys=True).encode()).hexdigest()
    seed = ph.truth.get("params", {}).get("seed", 0)
    slices = ct_slices(
        ph.volume,
        key,
        "OsteoAI^Phantom",
        f"PHANTOM-{seed}",
        "OsteoAI digital spine phantom",
        f"phantom {meta.get('dose', '')} {meta.get('kernel', '')}".strip(),
        meta.get("manufacturer", "OsteoAI phantom"),
        "digital phantom",
    )
    return write_series(slices, folder)
