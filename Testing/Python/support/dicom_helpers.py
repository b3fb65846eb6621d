"""Write tiny synthetic DICOM series for input-validation tests (no real patient data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_series(
    folder: Path,
    n: int = 12,
    modality: str = "CT",
    spacing=(0.8, 0.8, 2.0),
    skip=(),
    kernel="STANDARD",
    thickness=None,
    series_uid=None,
    tilt_mm_per_slice=0.0,
) -> Path:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    rng = np.random.default_rng(0)
    for z in range(n):
        if z in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{series_uid[-6:]}_{z:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = modality, study_uid, series_uid
        ds.Rows = ds.Columns = 32
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.SliceThickness = thickness or spacing[2]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -12.0 + z * tilt_mm_per_slice, 100.0 + z * spacing[2]]
        ds.KVP, ds.ConvolutionKernel, ds.InstanceNumber = 120, kernel, z + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        img = (rng.normal(1024, 30, (32, 32)) + 1000 * (np.arange(32) > 16)[None, :]).astype(np.int16)
        ds.PixelData = img.tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
    return folder
