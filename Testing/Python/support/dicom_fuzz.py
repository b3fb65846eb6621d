"""A DICOM header fuzzer for the reader: a small valid CT series, then 1-3 header elements of some slices
replaced by hostile values (garbage text, wrong counts, NaN, huge numbers, control characters, non-ASCII
digits, deleted elements, truncated pixel data). Every case must end in a Volume or an InputError.

Used by ``test_dicom_fuzz.py`` (a fast sample in ``make test``) and ``Testing/benchmarks/robustness.py``.
"""

from __future__ import annotations

import io
import shutil
import signal
from collections import Counter
from pathlib import Path

import numpy as np

# element -> whether the reader depends on it (pixel, geometry, rescale) or only describes the scan
TARGETS = [
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "RescaleSlope",
    "RescaleIntercept",
    "KVP",
    "SliceThickness",
    "CTDIvol",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "Modality",
    "ConvolutionKernel",
    "SeriesDescription",
    "PatientAge",
    "NumberOfFrames",
    "ImageType",
    "InstanceNumber",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PixelData",
    "Manufacturer",
    "SeriesNumber",
    "FrameOfReferenceUID",
]

VALUES: list[bytes | None] = [
    None,
    b"",
    b"abc",
    b"1\\2",
    b"0\\0",
    b"-1\\-1",
    b"nan",
    b"inf",
    b"-inf",
    b"1e308",
    b"-1e308",
    b"1e-308",
    b"120\\140",
    "\u0661\u0662\u0660".encode(),
    b"\x1b[31m120",
    b"12 0",
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"65535",
    b"4294967295",
    b"\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x01",
    b"1.2.3",
    b"1\\0\\0\\0\\1\\0",
    b"0\\0\\0\\0\\0\\0",
    b"1\\0\\0\\0\\1",
    b"1e5\\1e5\\1e5",
    b"-1e400\\0\\0",
    b"NaN\\0\\0",
    b"MR",
    b"CT\\CT",
    b"LOCALIZER",
    b"ORIGINAL\\PRIMARY\\LOCALIZER",
    b"\xc3\x28",
    b"1" * 64,
    b"A" * 1024,
    b"0.5\\0.5",
    b"1000\\1000",
]


def base_series(folder: Path, n: int = 10, size: int = 16) -> Path:
    """A small valid CT series (air around a water-like body with a bony block): the fuzz seed."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    for z in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{z:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "CT", study, series, frame
        ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = 2, z + 1, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Rows = ds.Columns = size
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -12.0, 100.0 + 2.0 * z]
        ds.KVP, ds.CTDIvol, ds.ConvolutionKernel, ds.PatientAge = 120, 5.0, "STANDARD", "065Y"
        ds.SeriesDescription, ds.Manufacturer = "fuzz", "fuzz"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        img = np.full((size, size), 24.0)
        img[:, : size // 4] = -1000
        img[size // 3 : size // 2, size // 3 : size // 2] = 700
        ds.PixelData = (img + rng.normal(0, 10, img.shape) + 1024).astype(np.int16).tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
    return folder


def mutate(base: Path, out: Path, rng: np.random.Generator) -> list[str]:
    """Copy ``base`` to ``out`` with 1-3 elements of some slices replaced; returns what was done."""
    import pydicom
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    shutil.copytree(base, out)
    files = sorted(out.glob("*.dcm"))
    done = []
    for _ in range(int(rng.integers(1, 4))):
        kw = TARGETS[int(rng.integers(len(TARGETS)))]
        mode = ["one", "all", "some"][int(rng.integers(3))]
        picked = {
            "one": [int(rng.integers(len(files)))],
            "all": list(range(len(files))),
            "some": [i for i in range(len(files)) if rng.random() < 0.5],
        }[mode]
        value = VALUES[int(rng.integers(len(VALUES)))]
        if kw == "PixelData" and value is not None:
            value = value[: int(rng.integers(0, 64))]  # truncated or garbage pixel data
        done.append(f"{kw}[{mode}]={value[:12] if value is not None else 'deleted'!r}")
        for i in picked:
            ds = pydicom.dcmread(files[i])
            tag = Tag(tag_for_keyword(kw))
            if value is None:
                if tag in ds:
                    del ds[tag]
            else:
                ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)
            buf = io.BytesIO()
            try:
                ds.save_as(buf, enforce_file_format=False)
            except Exception:
                continue
            files[i].write_bytes(buf.getvalue())
    if rng.random() < 0.1:  # a truncated file
        f = files[int(rng.integers(len(files)))]
        data = f.read_bytes()
        f.write_bytes(data[: int(rng.integers(0, len(data)))])
    return done


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_case(folder: Path, timeout_s: int = 20) -> tuple[str, str]:
    """(outcome, detail): 'volume', 'input_error', 'crash' (any other exception) or 'hang'."""
    from OsteoAIBaseLib.errors import InputError
    from OsteoAIBaseLib.imageio import read_volume, to_canonical
    from OsteoAILib.validate import validate

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout_s)
    try:
        vol = read_volume(folder)
        qc = validate(to_canonical(vol))
        if not np.all(np.isfinite(vol.array)):
            return "crash", "non-finite values passed validation"
        return "volume", "; ".join(qc)
    except InputError as e:
        msg = str(e)
        if "\n" in msg or "\x1b" in msg:
            return "crash", f"unprintable message {msg[:60]!r}"
        return "input_error", msg.split(":")[0][:60]
    except _Timeout:
        return "hang", f"over {timeout_s} s"
    except Exception as e:
        return "crash", f"{type(e).__name__}: {str(e)[:100]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def fuzz(work: Path, n: int, seed: int = 0, timeout_s: int = 20) -> tuple[Counter, list[tuple[list[str], str]]]:
    """Run ``n`` fuzzed series; (outcome counts, [(mutations, detail)] of crashes and hangs)."""
    base = base_series(work / "base")
    counts: Counter = Counter()
    bad = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        case = work / f"case{i}"
        done = mutate(base, case, rng)
        outcome, detail = run_case(case, timeout_s)
        counts[outcome] += 1
        if outcome in ("crash", "hang"):
            bad.append((done, detail))
        shutil.rmtree(case, ignore_errors=True)
    return counts, bad
