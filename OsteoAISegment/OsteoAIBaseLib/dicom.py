"""Find the CT series in a DICOM folder, check every slice's geometry and rescale, and read it as a
:class:`Volume`.

Nothing in a header is trusted: position, orientation, pixel spacing, matrix size and rescale are
read and checked on every slice (or frame of an enhanced multi-frame CT), each slice gets its own
RescaleSlope/Intercept, and values are computed at full width (a stored 65000 with intercept -1024
is 63976 HU, never a wrapped int16). Headers are read with pydicom; pixels with pydicom, or with
SimpleITK/GDCM for transfer syntaxes pydicom cannot decode here.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import dicom_tags as tags
from .errors import InputError, reader_message
from .volume import Volume

# Kernels meant for soft tissue / standard reconstruction (preferred for densitometry); sharp lung or
# bone kernels add noise and overshoot at cortical edges, which biases trabecular HU.
_SOFT_KERNEL = re.compile(r"^(STANDARD|SOFT|BODY|B[1-4]\d|BR[1-4]\d|I[1-4]\d|FC0\d|FC1\d|FC[2-4]\d|A|B|C)\b", re.I)
_SHARP_KERNEL = re.compile(r"(LUNG|BONE|SHARP|DETAIL|EDGE|B[6-9]\d|BR[6-9]\d|FC5\d|FC8\d|YA|YB|YC)", re.I)
MAX_GANTRY_TILT_DEG = 10.0
MAX_COORD_MM = 1e5  # a patient position beyond 100 m is a broken header, not a patient
MAX_PIXEL_SPACING_MM = 50.0
MIN_RESCALE_SLOPE, MAX_RESCALE_SLOPE, MAX_RESCALE_INTERCEPT = 1e-4, 1e3, 1e5  # beyond: no CT value is a HU
_NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
_PIXEL_FORMAT = (
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
)
# Tags that tell two series apart besides the UID (which may be empty or shared by a broken export).
_SERIES_TAGS = (
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "SeriesNumber",
    "Modality",
    "SeriesDescription",
    "SeriesTime",
)
# Functional-group sequences of an enhanced (multi-frame) CT holding what a classic slice has at top level.
_FG = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
    "KVP": "CTXRayDetailsSequence",
    "ConvolutionKernel": "CTReconstructionSequence",
    "CTDIvol": "CTExposureSequence",
}


@dataclass
class _Slice:
    """One image plane: a classic single-frame file, or one frame of a multi-frame file."""

    path: Path
    ds: object  # pydicom Dataset (no pixels)
    frame: int | None = None  # frame index in a multi-frame file
    per_frame: object = None  # this frame's item of PerFrameFunctionalGroupsSequence
    shared: object = None  # item of SharedFunctionalGroupsSequence

    def _where(self, keyword: str):
        """The dataset that holds ``keyword`` for this slice: per-frame group, shared group, top level."""
        if self.frame is None:
            return self.ds
        seqs = [_FG[keyword]] if keyword in _FG else []
        for group in (self.per_frame, self.shared):
            # Legacy-converted enhanced CT keeps what has no functional group in these two sequences.
            for seq in (
                *seqs,
                "UnassignedPerFrameConvertedAttributesSequence",
                "UnassignedSharedConvertedAttributesSequence",
            ):
                item = _first_item(group, seq)
                if item is not None and tags.raw_text(item, keyword) is not None:
                    return item
        return self.ds

    def numbers(self, keyword: str, count: int | None = None):
        return tags.numbers(self._where(keyword), keyword, count)

    def text(self, keyword: str) -> str:
        return tags.text(self._where(keyword), keyword)

    def raw(self, keyword: str) -> str:
        return tags.shorten(tags.raw_text(self._where(keyword), keyword) or "")


def _first_item(ds, keyword: str):
    if ds is None:
        return None
    try:
        seq = ds.get(keyword)
        return seq[0] if seq else None
    except Exception:
        return None


def _read_header(p: Path):
    import pydicom

    try:
        return pydicom.dcmread(p, stop_before_pixels=True)
    except Exception:
        return None


def _slices_of(p: Path, ds) -> list[_Slice]:
    try:
        n_frames = tags.numbers(ds, "NumberOfFrames", 1)
    except tags.BadValue as e:
        raise InputError(f"NumberOfFrames is malformed ('{e}')") from None
    if n_frames and not 1 <= n_frames[0] <= 100000:
        raise InputError(f"NumberOfFrames {n_frames[0]:g} is implausible")
    if n_frames and n_frames[0] == 1:
        n_frames = None
    per_frame_seq = _seq(ds, "PerFrameFunctionalGroupsSequence")
    if not n_frames and per_frame_seq is None:
        if tags.raw_text(ds, "ImagePositionPatient") is None and tags.raw_text(ds, "ImageOrientationPatient") is None:
            return []  # not an image plane with a position (SR, presentation state, DICOMDIR...)
        return [_Slice(p, ds)]
    if per_frame_seq is None:
        raise InputError("a multi-frame DICOM file has no per-frame functional groups: its frame positions are unknown")
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    n = int(n_frames[0]) if n_frames else len(per_frame_seq)
    if per_frame_seq is not None and len(per_frame_seq) != n:
        raise InputError(f"enhanced DICOM file has {n} frames but {len(per_frame_seq)} per-frame descriptions")
    return [_Slice(p, ds, f, per_frame_seq[f], shared) for f in range(n)]


def _seq(ds, keyword):
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _is_localizer(ds) -> bool:
    return "LOCALIZER" in tags.text(ds, "ImageType").upper().split("\\")


def _kernel(s: _Slice) -> str:
    return s.text("ConvolutionKernel")


def _kernel_rank(kernel: str) -> int:
    if not kernel:
        return 1
    if _SHARP_KERNEL.search(kernel):
        return 2
    return 0 if _SOFT_KERNEL.search(kernel) else 1


def list_series(folder: Path) -> list[dict]:
    """Image planes of the folder grouped into series by every tag that tells series apart."""
    groups: dict[tuple, list[_Slice]] = defaultdict(list)
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        ds = _read_header(p)
        if ds is None or _is_localizer(ds):
            continue
        try:
            planes = _slices_of(p, ds)
        except InputError:
            if tags.text(ds, "Modality").upper() == "CT":
                raise
            continue  # a broken multi-frame object of another kind (screen capture, dose report) is no CT
        if planes:
            key = tuple(tags.text(ds, t) for t in _SERIES_TAGS) + (_kernel(planes[0]),)
            groups[key].extend(planes)
    series = []
    for key, items in groups.items():
        s0 = items[0]
        try:
            thickness = s0.numbers("SliceThickness", 1)
        except tags.BadValue:
            thickness = None
        thickness = thickness[0] if thickness and 0 < thickness[0] < 100 else 0.0
        series.append(
            {
                "uid": key[0],
                "items": items,
                "modality": key[4].upper(),
                "description": key[5],
                "kernel": key[-1],
                "slice_thickness": thickness,
                "n": len(items),
            }
        )
    return series


def choose_series(series: list[dict]) -> tuple[dict, str]:
    """The thinnest standard/soft-kernel CT series with at least 10 slices, and why it was chosen.

    The reason names the series by its size, thickness and kernel only: descriptions and UIDs can carry
    patient identity and go into results and logs.
    """
    ct = [s for s in series if s["modality"] == "CT"]
    if not ct:
        mods = sorted({tags.shorten(s["modality"], 8) or "?" for s in series})
        raise InputError(f"no CT series in the folder (found modality {', '.join(mods)})")
    usable = [s for s in ct if s["n"] >= 10] or ct
    best = min(usable, key=lambda s: (_kernel_rank(s["kernel"]), s["slice_thickness"] or 99, -s["n"]))
    why = f"{best['n']} slices, {best['slice_thickness']:g} mm, kernel {tags.shorten(best['kernel'], 24) or 'unknown'}"
    if len(ct) > 1:
        why += f" (chosen among {len(ct)} CT series: thinnest soft-tissue kernel)"
    return best, why


@dataclass
class _Geometry:
    slices: list[_Slice]
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray
    rows: int
    cols: int
    rescale: list[tuple[float, float]]
    qc: list[str] = field(default_factory=list)


def _per_slice(items: list[_Slice], keyword: str, count: int, what: str) -> np.ndarray:
    """[n, count] values of ``keyword`` on every slice, or one InputError naming how many slices are bad."""
    vals, bad, example = [], 0, ""
    for s in items:
        try:
            v = s.numbers(keyword, count)
        except tags.BadValue as e:
            v, example = None, example or str(e)
        if v is None:
            bad += 1
            example = example or "missing"
            v = [np.nan] * count
        vals.append(v)
    if bad:
        raise InputError(
            f"{keyword} is missing or malformed on {bad} of {len(items)} slices (e.g. '{example}'): {what}"
        )
    return np.asarray(vals, dtype=float)


def _same(values: np.ndarray, tol: float) -> int:
    """How many rows differ from the first row by more than ``tol``."""
    return int(np.sum(np.any(np.abs(values - values[0]) > tol, axis=1)))


def _geometry(items: list[_Slice], uid_missing: bool) -> _Geometry:
    """Check position, orientation, spacing, matrix and rescale of every slice; sort along the normal."""
    n = len(items)
    if n < 2:
        raise InputError("the DICOM series holds a single slice: a 3D CT volume is needed")
    pos = _per_slice(items, "ImagePositionPatient", 3, "slice positions are unknown")
    if np.any(np.abs(pos) > MAX_COORD_MM):
        raise InputError(
            f"ImagePositionPatient is implausible (beyond {MAX_COORD_MM:g} mm) on "
            f"{int(np.any(np.abs(pos) > MAX_COORD_MM, axis=1).sum())} of {n} slices"
        )
    iop = _per_slice(items, "ImageOrientationPatient", 6, "the slice orientation is unknown")
    row, col = iop[0, :3], iop[0, 3:]
    if not (abs(np.linalg.norm(row) - 1) < 1e-2 and abs(np.linalg.norm(col) - 1) < 1e-2 and abs(row @ col) < 1e-2):
        raise InputError(
            f"ImageOrientationPatient is not two orthogonal unit vectors ('{items[0].raw('ImageOrientationPatient')}')"
        )
    if k := _same(iop, 1e-3):
        raise InputError(
            f"ImageOrientationPatient differs between slices ({k} of {n} differ from the first): not one volume"
        )
    ps = _per_slice(items, "PixelSpacing", 2, "the voxel size is unknown")
    if np.any(ps <= 0) or np.any(ps > MAX_PIXEL_SPACING_MM):
        bad = int(np.any((ps <= 0) | (ps > MAX_PIXEL_SPACING_MM), axis=1).sum())
        raise InputError(
            f"PixelSpacing is zero, negative or implausible on {bad} of {n} slices "
            f"(e.g. '{items[int(np.argmax(np.any((ps <= 0) | (ps > 50), axis=1)))].raw('PixelSpacing')}')"
            ": the voxel size is unknown"
        )
    if k := _same(ps, 1e-4 * ps[0].max()):
        raise InputError(f"PixelSpacing differs between slices ({k} of {n} differ from the first): not one volume")
    size = _per_slice(items, "Rows", 1, "the image size is unknown")[:, 0]
    size = np.stack([size, _per_slice(items, "Columns", 1, "the image size is unknown")[:, 0]], axis=1)
    if k := _same(size, 0):
        raise InputError(f"Rows/Columns differ between slices ({k} of {n} differ from the first): not one volume")
    _same_pixel_format(items)
    rescale, qc = _rescale(items)
    if uid_missing:
        inst = [s.text("InstanceNumber") for s in items if s.frame is None]
        if len(set(inst)) < len(inst):
            raise InputError("slices without a SeriesInstanceUID share instance numbers: several series are mixed")
    normal = np.cross(row, col)
    d = pos @ normal
    order = np.argsort(d, kind="stable")
    d, pos = d[order], pos[order]
    items = [items[i] for i in order]
    rescale = [rescale[i] for i in order]
    gaps = np.diff(d)
    if np.any(gaps < 1e-3):
        raise InputError("the DICOM series has duplicate slice positions (several series mixed?)")
    med = float(np.median(gaps))
    if np.max(gaps) > 1.5 * med:
        n_missing = int(np.round(np.sum(gaps[gaps > 1.5 * med] / med - 1)))
        raise InputError(
            f"the DICOM series has missing slices (about {n_missing} absent; gap of {np.max(gaps):.1f} mm)"
        )
    if np.ptp(gaps) > 0.05 * med:
        qc.append(f"uneven_spacing: slice spacing varies {gaps.min():.2f}-{gaps.max():.2f} mm")
    step = (pos[-1] - pos[0]) / np.linalg.norm(pos[-1] - pos[0])
    tilt = float(np.degrees(np.arccos(np.clip(abs(step @ normal), -1, 1))))
    if tilt > MAX_GANTRY_TILT_DEG:
        raise InputError(f"gantry tilt of {tilt:.1f} degrees is not supported (max {MAX_GANTRY_TILT_DEG:g})")
    if tilt > 0.5:
        qc.append(f"gantry_tilt: slices tilted {tilt:.1f} degrees; geometry approximated as orthogonal")
    direction = np.stack([row / np.linalg.norm(row), col / np.linalg.norm(col), normal / np.linalg.norm(normal)], 1)
    # DICOM PixelSpacing is (between rows, between columns) = (j, i).
    spacing = (float(ps[0, 1]), float(ps[0, 0]), med)
    return _Geometry(items, spacing, pos[0], direction, int(size[0, 0]), int(size[0, 1]), rescale, qc)


def _same_pixel_format(items: list[_Slice]) -> None:
    """Pixel data of one volume is stored one way: a slice stored otherwise is decoded as garbage."""

    def value(s: _Slice, keyword: str):
        if keyword == "PhotometricInterpretation":
            return s.text(keyword)
        try:
            v = s.numbers(keyword)
        except tags.BadValue:
            return "malformed"
        return tuple(v) if v else None

    fmt = [tuple(value(s, k) for k in _PIXEL_FORMAT) for s in items]
    if k := sum(f != fmt[0] for f in fmt):
        raise InputError(
            f"the pixel format (bits, sign, samples) differs between slices ({k} of {len(items)} "
            "differ from the first): not one volume"
        )
    samples = fmt[0][_PIXEL_FORMAT.index("SamplesPerPixel")]
    if samples not in (None, (1.0,)):
        one = isinstance(samples, tuple) and len(samples) == 1
        shown = f"{samples[0]:g}" if one else tags.shorten(str(samples), 12)
        raise InputError(f"{shown} samples per pixel: a CT has one (greyscale) sample")


def _rescale(items: list[_Slice]) -> tuple[list[tuple[float, float]], list[str]]:
    """(slope, intercept) of every slice; each slice keeps its own (DICOM allows them to differ)."""
    out, missing = [], 0
    for s in items:
        try:
            slope = s.numbers("RescaleSlope", 1)
            icpt = s.numbers("RescaleIntercept", 1)
        except tags.BadValue as e:
            raise InputError(
                f"RescaleSlope/RescaleIntercept is malformed ('{e}'): the Hounsfield units are unknown"
            ) from None
        if slope is None or icpt is None:
            missing += 1
            out.append(None)
            continue
        if slope[0] == 0:
            raise InputError("RescaleSlope is 0: the Hounsfield units are unknown")
        if not (MIN_RESCALE_SLOPE <= slope[0] <= MAX_RESCALE_SLOPE and abs(icpt[0]) <= MAX_RESCALE_INTERCEPT):
            raise InputError(
                f"RescaleSlope/RescaleIntercept {slope[0]:g}/{icpt[0]:g} is implausible for CT: "
                "the Hounsfield units are unknown"
            )
        out.append((slope[0], icpt[0]))
    if missing == len(items):
        # The CT IOD requires the rescale; stored values are taken as HU and validation refuses them if
        # they do not look like HU (raw unsigned values have no air below -50).
        return [(1.0, 0.0)] * len(items), ["rescale_missing: no RescaleSlope/Intercept; stored values taken as HU"]
    if missing:
        raise InputError(
            f"RescaleSlope/RescaleIntercept is missing on {missing} of {len(items)} slices: "
            "the Hounsfield units of those slices are unknown"
        )
    return out, []


def _stored_pixels(path: Path, cache: dict) -> tuple[np.ndarray, bool]:
    """(pixels of a file, already rescaled?): stored values from pydicom; HU from GDCM as a fallback."""
    if path in cache:
        return cache[path]
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception:
        raise InputError("a DICOM file of the series is damaged (its pixel data cannot be read)") from None
    if "PixelData" not in ds:
        raise InputError("a slice of the series has no pixel data")
    native = not ds.file_meta.get("TransferSyntaxUID") or ds.file_meta.TransferSyntaxUID in _NATIVE_SYNTAXES
    if native:
        # Uncompressed: the data must hold every pixel the header announces (a short one is truncated, and
        # decoders would pad it with zeros: water in the middle of a patient).
        try:
            bits = tags.numbers(ds, "BitsAllocated", 1) or [16.0]
            frames = tags.numbers(ds, "NumberOfFrames", 1) or [1.0]
            rows = tags.numbers(ds, "Rows", 1) or [0.0]
            cols = tags.numbers(ds, "Columns", 1) or [0.0]
        except tags.BadValue as e:
            raise InputError(f"the pixel format of a slice is malformed ('{e}')") from None
        if bits[0] not in (8, 16, 32):
            raise InputError(f"BitsAllocated {bits[0]:g} is not a CT pixel format")
        need = int(rows[0] * cols[0] * frames[0] * bits[0] // 8)
        have = len(ds.PixelData or b"")
        if have < need or need == 0:
            raise InputError(f"a slice's pixel data is truncated ({have} of {need} bytes)")
    try:
        arr, rescaled = np.asarray(ds.pixel_array), False
    except Exception as e:
        if native:
            raise InputError(f"cannot decode the DICOM pixels: {tags.shorten(str(e), 80)}") from None
        import SimpleITK as sitk

        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as e:
            raise InputError(f"cannot decode the DICOM pixels: {reader_message(e, path)}") from None
        arr, rescaled = sitk.GetArrayFromImage(img), True
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
    cache.clear()  # one file at a time: a multi-frame file is read once, classic files never pile up
    cache[path] = (arr, rescaled)
    return arr, rescaled


def _pixels(g: _Geometry) -> np.ndarray:
    """HU array [k, j, i] at full width: int16 when every value fits, float32 otherwise (never wrapped)."""
    integral = all(float(s).is_integer() and float(b).is_integer() for s, b in g.rescale)
    out = np.empty((len(g.slices), g.rows, g.cols), dtype=np.int32 if integral else np.float32)
    cache: dict = {}
    for k, (s, (slope, icpt)) in enumerate(zip(g.slices, g.rescale, strict=True)):
        arr, rescaled = _stored_pixels(s.path, cache)
        if s.frame is not None:
            if arr.ndim != 3 or s.frame >= arr.shape[0]:
                raise InputError(f"the enhanced DICOM file holds fewer frames than it describes ({arr.shape})")
            arr = arr[s.frame]
        if arr.shape != (g.rows, g.cols):
            raise InputError(f"a slice's pixel data is {arr.shape[-2:]} but its header says {g.rows}x{g.cols}")
        if rescaled:
            hu = arr.astype(np.float64)
        elif integral:
            hu = arr.astype(np.int64) * int(slope) + int(icpt)
        else:
            hu = arr.astype(np.float64) * slope + icpt
        out[k] = np.clip(hu, -(2**31), 2**31 - 1) if integral else hu
    if not np.issubdtype(out.dtype, np.integer):
        if np.all(np.mod(out, 1) == 0) and out.min() >= -32768 and out.max() <= 32767:
            return out.astype(np.int16)
        return out
    if out.min() >= -32768 and out.max() <= 32767:
        return out.astype(np.int16)
    return out.astype(np.float32)  # exact for |HU| < 2**24; stages take float input


def read_dicom_folder(folder: str | Path) -> Volume:
    folder = Path(folder)
    series = list_series(folder)
    if not series:
        raise InputError("no DICOM images found in the input folder")
    best, why = choose_series(series)
    g = _geometry(best["items"], uid_missing=not best["uid"])
    array = _pixels(g)
    s0 = g.slices[0]
    notes: list[str] = []
    kvp = tags.optional_number(s0._where("KVP"), "KVP", notes, 40, 200)
    thickness = tags.optional_number(s0._where("SliceThickness"), "SliceThickness", notes, 0.01, 100)
    ctdi = tags.optional_number(s0._where("CTDIvol"), "CTDIvol", notes, 0, 1e4)
    meta = {
        "source": "dicom",
        "format": "dicom",
        "series": why,
        "modality": best["modality"],
        "kvp": kvp,
        "kernel": best["kernel"] or None,
        "slice_thickness": thickness,
        "ctdivol": ctdi,
        "manufacturer": tags.text(s0.ds, "Manufacturer") or None,
        "model": tags.text(s0.ds, "ManufacturerModelName") or None,
        "age": _age_years(tags.text(s0.ds, "PatientAge")),
        "sex": tags.text(s0.ds, "PatientSex") or None,
        "load_qc": g.qc + notes,
        # Identifiers: kept apart, written only when the user asks for them (--keep-identifiers).
        "identifiers": {"series_description": best["description"], "series_instance_uid": best["uid"]},
    }
    if kvp is not None:
        meta["kvp_source"] = "dicom"
    if s0.frame is not None:
        meta["dicom_storage"] = "enhanced multi-frame"
    return Volume(array, g.spacing, tuple(g.origin), g.direction, meta)


def _age_years(age: str) -> float | None:
    m = re.fullmatch(r"(\d{1,3})([YMWD])", str(age).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"Y": n, "M": n / 12, "W": n / 52, "D": n / 365}[unit]
