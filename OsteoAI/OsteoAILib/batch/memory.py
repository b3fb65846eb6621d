"""How much memory one study needs, from its header alone, so the scheduler never starts more studies than
fit: a 512x512x600 chest CT needs several times what a 5 mm abdomen does, and an out-of-memory kill would
take a whole worker (and its other studies) down."""

from __future__ import annotations

from pathlib import Path

# Measured by Testing/benchmarks/batch_throughput.py (least-squares fit of a worker's peak RSS against voxels
# over 20 studies: 708 MB + 12.4 B/voxel, rounded up): the interpreter with numpy, SimpleITK, scipy and torch
# loaded, plus working copies of the volume (float32 canonical grid, labelmaps, distance maps).
BASE_BYTES = 750e6
BYTES_PER_VOXEL = 14.0
_DEFAULT_VOXELS = 512 * 512 * 300  # when a header cannot be read: a typical chest CT


def voxels(path: str) -> int:
    """Voxel count from the header (file) or the file count x one header's matrix (DICOM folder)."""
    p = Path(path)
    try:
        if p.is_dir():
            import pydicom

            files = [f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")]
            for f in files[:10]:
                try:
                    ds = pydicom.dcmread(f, stop_before_pixels=True)
                    return int(ds.Rows) * int(ds.Columns) * len(files)
                except Exception:
                    continue
            return _DEFAULT_VOXELS
        import SimpleITK as sitk

        r = sitk.ImageFileReader()
        r.SetFileName(str(p))
        r.ReadImageInformation()
        n = 1
        for s in r.GetSize():
            n *= int(s)
        return n
    except Exception:
        return _DEFAULT_VOXELS


def estimate_bytes(path: str) -> float:
    return BASE_BYTES + BYTES_PER_VOXEL * voxels(path)


def available_bytes() -> float:
    import psutil

    return float(psutil.virtual_memory().available)
