"""Bad-input corpus: every broken, hostile or unusual input ends in one exact outcome, never a silent
wrong number and never a traceback.

Each case builds its input here (small pydicom-written series, synthetic arrays, NIfTI/MHA headers
patched byte by byte) and states the outcome: an error line and exit code 1, a QC flag, or the exact
values a correct reader gives.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.imageio import read_volume
from OsteoAIBaseLib.volume import Volume
from OsteoAILib.cli import main as cli_main
from OsteoAILib.validate import corrupt_slices_in_roi, validate
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from scipy import ndimage
from support.dicom_helpers import write_series

N = 12


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _edit(folder: Path, fn, only=None) -> Path:
    """Apply ``fn(ds, index)`` to the slices of a series (all, or the indices in ``only``) and save."""
    for i, f in enumerate(_files(folder)):
        if only is not None and i not in only:
            continue
        ds = pydicom.dcmread(f)
        fn(ds, i)
        ds.save_as(f)
    return folder


def _raw(ds, keyword: str, value: bytes) -> None:
    """Store ``value`` as the element's bytes, unvalidated: what a broken scanner or a fuzzer writes."""
    tag = Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _series(tmp_path, name="s", **kw) -> Path:
    return write_series(tmp_path / name, n=N, **kw)


def _error(path) -> str:
    with pytest.raises(InputError) as e:
        read_volume(path)
    return str(e.value)


# ---------------------------------------------------------------------------------------------- DICOM values


def test_stored_values_above_32767_do_not_wrap(tmp_path):
    """A metal block stored as 65000 (unsigned) with intercept -1024 is 63976 HU, not -1560."""

    def metal(ds, i):
        ds.PixelRepresentation = 0
        img = np.full((32, 32), 1064, np.uint16)  # 40 HU
        img[:, :8] = 24  # air
        img[10:14, 10:14] = 65000
        ds.PixelData = img.tobytes()

    vol = read_volume(_edit(_series(tmp_path), metal))
    assert vol.array.max() == 63976 and vol.array.min() == -1000
    assert vol.array.dtype != np.int16  # kept at full width
    flags = [q for q in validate(vol) if q.startswith("implausible_hu")]
    assert flags == ["implausible_hu: 192 voxels above 30710 HU, beyond any CT scale (metal, or stored values misread)"]


def test_rescale_missing_on_one_slice_is_refused(tmp_path):
    def drop(ds, i):
        del ds.RescaleSlope, ds.RescaleIntercept

    msg = _error(_edit(_series(tmp_path), drop, only={5}))
    assert msg == (
        "RescaleSlope/RescaleIntercept is missing on 1 of 12 slices: the Hounsfield units of those slices are unknown"
    )


def test_rescale_per_slice_is_applied_per_slice(tmp_path):
    """Slice 5 stores half the values with slope 2: it must read the same HU as the others."""
    folder = _series(tmp_path)
    before = read_volume(folder).array.copy()

    def halve(ds, i):
        img = np.frombuffer(ds.PixelData, np.int16).reshape(32, 32).astype(np.int32)
        ds.PixelData = ((img + 1024) // 2).astype(np.int16).tobytes()  # stored = (HU + 2048) / 2
        ds.RescaleSlope, ds.RescaleIntercept = 2, -2048

    after = read_volume(_edit(folder, halve, only={5})).array
    assert np.abs(after.astype(int) - before.astype(int)).max() <= 1  # integer halving loses at most 1 HU


@pytest.mark.parametrize("bad", [b"abc", b"1\\2", b"nan"])
def test_rescale_malformed_is_refused(tmp_path, bad):
    msg = _error(_edit(_series(tmp_path), lambda ds, i: _raw(ds, "RescaleSlope", bad), only={3}))
    assert msg.startswith("RescaleSlope/RescaleIntercept is malformed")


def test_orientation_different_on_one_slice_is_refused(tmp_path):
    def rotate(ds, i):
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]

    msg = _error(_edit(_series(tmp_path), rotate, only={4}))
    assert msg == "ImageOrientationPatient differs between slices (1 of 12 differ from the first): not one volume"


def test_orientation_not_orthonormal_is_refused(tmp_path):
    msg = _error(_edit(_series(tmp_path), lambda ds, i: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0])))
    assert msg.startswith("ImageOrientationPatient is not two orthogonal unit vectors")


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "PixelSpacing is missing or malformed on 12 of 12 slices (e.g. 'missing'): the voxel size is unknown"),
        (
            b"abc\\def",
            "PixelSpacing is missing or malformed on 12 of 12 slices (e.g. 'abc\\def'): the voxel size is unknown",
        ),
        (b"0.8", "PixelSpacing is missing or malformed on 12 of 12 slices (e.g. '0.8'): the voxel size is unknown"),
        (
            b"0\\0",
            "PixelSpacing is zero, negative or implausible on 12 of 12 slices (e.g. '0\\0'): the voxel size is unknown",
        ),
        (
            b"-0.8\\0.8",
            "PixelSpacing is zero, negative or implausible on 12 of 12 slices (e.g. '-0.8\\0.8'): "
            "the voxel size is unknown",
        ),
    ],
)
def test_missing_garbage_or_zero_pixel_spacing_is_refused(tmp_path, value, message):
    def spacing(ds, i):
        if value is None:
            del ds.PixelSpacing
        else:
            _raw(ds, "PixelSpacing", value)

    assert _error(_edit(_series(tmp_path), spacing)) == message


def test_pixel_spacing_different_on_one_slice_is_refused(tmp_path):
    msg = _error(_edit(_series(tmp_path), lambda ds, i: setattr(ds, "PixelSpacing", [0.9, 0.9]), only={7}))
    assert msg == "PixelSpacing differs between slices (1 of 12 differ from the first): not one volume"


@pytest.mark.parametrize("value", [b"1\\2", b"abc\\0\\0", b""])
def test_malformed_position_is_refused(tmp_path, value):
    msg = _error(_edit(_series(tmp_path), lambda ds, i: _raw(ds, "ImagePositionPatient", value), only={2}))
    assert msg.startswith("ImagePositionPatient is missing or malformed on 1 of 12 slices")


def test_infinite_slice_gap_is_refused(tmp_path):
    msg = _error(_edit(_series(tmp_path), lambda ds, i: _raw(ds, "ImagePositionPatient", b"0\\0\\1e300"), only={2}))
    assert msg == "ImagePositionPatient is implausible (beyond 100000 mm) on 1 of 12 slices"


def test_matrix_size_different_on_one_slice_is_refused(tmp_path):
    def smaller(ds, i):
        ds.Rows = ds.Columns = 16
        ds.PixelData = np.zeros((16, 16), np.int16).tobytes()

    msg = _error(_edit(_series(tmp_path), smaller, only={3}))
    assert msg == "Rows/Columns differ between slices (1 of 12 differ from the first): not one volume"


@pytest.mark.parametrize("value", [b"abc", b"120\\140", "١٢٠".encode(), b"\x1b[2J120"])
def test_malformed_kvp_is_ignored_with_a_note(tmp_path, value):
    vol = read_volume(_edit(_series(tmp_path), lambda ds, i: _raw(ds, "KVP", value)))
    assert vol.meta["kvp"] is None and "kvp_source" not in vol.meta
    notes = [q for q in vol.meta["load_qc"] if q.startswith("header: KVP value")]
    assert len(notes) == 1 and "\x1b" not in notes[0]


@pytest.mark.parametrize(
    "keyword, value, shown",
    [
        ("SliceThickness", b"1.2.3", "1.2.3"),
        ("CTDIvol", struct.pack("<d", float("nan")), "nan"),
        ("CTDIvol", b"\x01\x02", "undecodable"),
    ],
)
def test_malformed_descriptive_tags_are_ignored_with_a_note(tmp_path, keyword, value, shown):
    vol = read_volume(_edit(_series(tmp_path), lambda ds, i: _raw(ds, keyword, value)))
    key = {"SliceThickness": "slice_thickness", "CTDIvol": "ctdivol"}[keyword]
    assert vol.meta[key] is None
    assert f"header: {keyword} value '{shown}' is unreadable and was ignored" in vol.meta["load_qc"]
    assert vol.shape == (12, 32, 32)


def test_kvp_source_is_dicom(tmp_path):
    vol = read_volume(_series(tmp_path))
    assert vol.meta["kvp"] == 120 and vol.meta["kvp_source"] == "dicom"
    from OsteoAILib.calibration import resolve_kvp

    assert resolve_kvp(vol)[:2] == (120.0, "dicom")


def test_rescale_missing_everywhere_and_raw_values_is_not_ct(tmp_path):
    """Stored 0..4095 values without rescale are no HU: refused as not CT, not screened."""

    def drop(ds, i):
        del ds.RescaleSlope, ds.RescaleIntercept

    vol = read_volume(_edit(_series(tmp_path), drop))
    assert "rescale_missing: no RescaleSlope/Intercept; stored values taken as HU" in vol.meta["load_qc"]
    with pytest.raises(InputError, match="^not CT"):
        validate(vol)


# -------------------------------------------------------------------------------------------- series split


def test_two_series_with_an_empty_uid_are_not_interleaved(tmp_path):
    write_series(tmp_path / "d", n=N, kernel="LUNG", series_uid="1.2.3")
    write_series(tmp_path / "d", n=N, kernel="STANDARD", series_uid="1.2.4")
    _edit(tmp_path / "d", lambda ds, i: setattr(ds, "SeriesInstanceUID", ""))
    vol = read_volume(tmp_path / "d")
    assert vol.shape == (12, 32, 32) and vol.meta["kernel"] == "STANDARD"
    assert "chosen among 2 CT series" in vol.meta["series"]


def test_identical_series_with_an_empty_uid_are_refused(tmp_path):
    write_series(tmp_path / "d", n=N, series_uid="1.2.3")
    write_series(tmp_path / "d", n=N, series_uid="1.2.4")
    files = _files(tmp_path / "d")

    def shift(ds, i):
        ds.SeriesInstanceUID, ds.StudyInstanceUID = "", "1.2.826.0.1.3680043.99.1"
        if str(ds.filename).endswith(tuple(f.name for f in files[N:])) or i >= N:
            ds.ImagePositionPatient = [-10.0, -12.0, 101.0 + (i - N) * 2.0]  # interleaved half a slice apart

    _edit(tmp_path / "d", shift)
    assert _error(tmp_path / "d") == (
        "slices without a SeriesInstanceUID share instance numbers: several series are mixed"
    )


def test_localizer_in_the_series_is_skipped(tmp_path):
    folder = _series(tmp_path)

    def scout(ds, i):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

    _edit(folder, scout, only={0})
    assert read_volume(folder).shape == (11, 32, 32)


def test_series_choice_names_no_description_or_uid(tmp_path):
    uid = "1.2.826.0.1.3680043.99.424242"
    write_series(tmp_path / "d", n=N, series_uid=uid)
    _edit(tmp_path / "d", lambda ds, i: setattr(ds, "SeriesDescription", "DOE^JOHN chest"))
    vol = read_volume(tmp_path / "d")
    assert "DOE" not in vol.meta["series"] and "424242" not in vol.meta["series"]
    assert vol.meta["identifiers"] == {"series_description": "DOE^JOHN chest", "series_instance_uid": uid}


# ----------------------------------------------------------------------------------------- enhanced DICOM


def test_enhanced_multiframe_ct_reads_like_the_classic_series(tmp_path):
    hd = pytest.importorskip("highdicom")
    classic = _series(tmp_path)
    ref = read_volume(classic)
    dsets = [pydicom.dcmread(f) for f in _files(classic)]
    for ds in dsets:  # highdicom needs the patient/study modules a scanner writes
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^MF", "MF1", "", "O"
        ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
        ds.StudyID, ds.SeriesNumber, ds.FrameOfReferenceUID = "1", 1, "1.2.826.0.1.3680043.99.7"
        ds.Manufacturer, ds.PositionReferenceIndicator = "test", ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelRepresentation = 1
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        dsets, series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(), instance_number=1
    )
    (tmp_path / "mf").mkdir()
    mf.save_as(tmp_path / "mf" / "enhanced.dcm")
    vol = read_volume(tmp_path / "mf")
    assert vol.meta["dicom_storage"] == "enhanced multi-frame"
    assert np.array_equal(vol.array, ref.array)
    assert vol.spacing == pytest.approx(ref.spacing) and vol.origin == pytest.approx(ref.origin)
    assert np.allclose(vol.direction, ref.direction)
    assert vol.meta["kvp"] == 120 and vol.meta["kvp_source"] == "dicom"


# ------------------------------------------------------------------------------------------ NIfTI and MHA


def _nifti(tmp_path, arr, pixdim=None, sform=False, name="ct.nii") -> Path:
    """A NIfTI written by nibabel, then its pixdim patched on disk (nibabel refuses to write bad ones)."""
    nib = pytest.importorskip("nibabel")
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), affine)
    img.set_qform(None if sform else affine, code=0 if sform else 1)
    img.set_sform(affine if sform else None, code=1 if sform else 0)
    p = tmp_path / name
    nib.save(img, p)
    if pixdim is not None:
        b = bytearray(p.read_bytes())
        pd = list(struct.unpack("<8f", b[76:108]))
        pd[1:4] = pixdim
        b[76:108] = struct.pack("<8f", *pd)
        p.write_bytes(bytes(b))
    return p


def _ct_like(shape=(20, 16, 16)) -> np.ndarray:
    a = np.random.default_rng(0).normal(40, 20, shape)
    a[:, :3] = -1000
    a[:, 8:10, 6:10] = 600
    return a.astype(np.int16)


@pytest.mark.parametrize("sform", [False, True])
def test_negative_nifti_pixdim_keeps_the_affine_orientation(tmp_path, sform):
    arr = _ct_like()
    good = read_volume(_nifti(tmp_path, arr, sform=sform, name="good.nii"))
    bad = read_volume(_nifti(tmp_path, arr, pixdim=(0.8, 0.8, -2.0), sform=sform, name="neg.nii"))
    assert bad.index_to_lps((5, 3, 2)) == pytest.approx(good.index_to_lps((5, 3, 2)))  # not flipped
    assert any(q.startswith("negative_spacing") for q in bad.meta["load_qc"])


def test_zero_nifti_pixdim_is_refused(tmp_path):
    msg = _error(_nifti(tmp_path, _ct_like(), pixdim=(0.0, 0.8, 2.0)))
    assert msg.startswith("the NIfTI header's voxel size (pixdim) is zero or negative")


def test_negative_mha_spacing_is_folded_into_the_direction(tmp_path):
    arr = _ct_like((10, 5, 6))
    header = (
        "ObjectType = Image\nNDims = 3\nDimSize = 6 5 10\nElementType = MET_SHORT\nElementSpacing = 1 1 -2\n"
        "Offset = 0 0 0\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nElementDataFile = LOCAL\n"
    )
    p = tmp_path / "neg.mha"
    p.write_bytes(header.encode() + arr.tobytes())
    vol = read_volume(p)
    assert vol.spacing == pytest.approx((1, 1, 2))
    assert vol.index_to_lps((3, 0, 0)) == pytest.approx((0, 0, -6))  # origin + 3 * (-2 mm), as the header says


def test_nan_slab_is_refused(tmp_path):
    a = _ct_like().astype(np.float32)
    a[5:8] = np.nan
    p = tmp_path / "nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(a), str(p))
    with pytest.raises(InputError) as e:
        validate(read_volume(p))
    assert str(e.value) == "the volume contains NaN or infinite values in 3 of 20 slices: no HU there"


def test_mr_like_nifti_is_refused_as_not_ct_in_one_line(tmp_path, capsys):
    mr = np.random.default_rng(3).gamma(2.0, 200.0, (24, 32, 32)).astype(np.float32)
    p = tmp_path / "t1.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(mr), str(p))
    rc = cli_main(["run", str(p), "--out", str(tmp_path / "o"), "--quiet", "--segmenter", "classical"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("osteoai run: error: not CT: no air or fat")
    assert not (tmp_path / "o" / "results.json").exists()


def test_blank_slice_is_flagged():
    a = _ct_like()
    a[7] = 0
    assert any(q.startswith("blank_slice: 1 slice(s)") for q in validate(Volume(a, (0.8, 0.8, 2.0))))


# -------------------------------------------------------------------------------------- corrupted slices


def test_random_pixels_in_one_roi_slice_are_found():
    rng = np.random.default_rng(5)
    a = rng.normal(150, 30, (20, 40, 40)).astype(np.float32)
    roi = np.zeros(a.shape, bool)
    roi[6:14, 15:25, 15:25] = True
    assert corrupt_slices_in_roi(a, roi) == []
    hit = rng.random((40, 40)) < 0.2
    a[10][hit] = rng.uniform(-1000, 3000, hit.sum())
    found = corrupt_slices_in_roi(a, roi)
    assert [k for k, _ in found] == [10]
    from OsteoAILib.pipeline import _corrupt_roi_flags  # what the pipeline adds to the level's flags

    labelmap = np.where(roi, 20, 0).astype(np.int16)
    box = ndimage.find_objects(labelmap)[19]
    flags = _corrupt_roi_flags(Volume(a, (0.8, 0.8, 2.0)), labelmap, 20, box)
    assert len(flags) == 1 and flags[0].startswith("implausible: L1 ROI slice k=10 looks corrupted")
    from OsteoAILib.qc import EXCLUDING

    assert "implausible" in EXCLUDING  # 'implausible' keeps the level out of the diagnosis


@pytest.mark.parametrize("k_range", [(0, 6), (3, 9), (14, 20), (0, 20)])
def test_corrupt_roi_slices_judged_in_the_roi_box_as_on_the_whole_volume(k_range):
    """The pipeline judges each ROI inside its box plus one slice either way (speed): the same slices,
    the same fractions as on the whole volume, the volume's edge slices skipped as before."""
    from OsteoAILib.pipeline import _corrupt_roi_flags

    rng = np.random.default_rng(11)
    a = rng.normal(150, 30, (20, 40, 40)).astype(np.float32)
    k0, k1 = k_range
    labelmap = np.zeros(a.shape, np.int16)
    labelmap[k0:k1, 12:30, 15:25] = 20
    labelmap[:, 30:, :] = 21  # another level beside it
    for k in (k0, k1 - 1):  # the ROI's first and last slice: their neighbours lie outside its box
        hit = rng.random((40, 40)) < 0.3
        a[k][hit] = rng.uniform(-1000, 3000, hit.sum())
    whole = corrupt_slices_in_roi(a, labelmap == 20)
    flags = _corrupt_roi_flags(Volume(a, (0.8, 0.8, 2.0)), labelmap, 20, ndimage.find_objects(labelmap)[19])
    if whole:
        k, frac = max(whole, key=lambda b: b[1])
        assert flags == [
            f"implausible: L1 ROI slice k={k} looks corrupted ({100 * frac:.0f}% of its voxels "
            "jump >500 HU from both neighbour slices)"
        ]
    else:
        assert flags == []
    assert [k for k, _ in whole] == sorted({k0, k1 - 1} - {0, 19})  # the volume's edge slices: not judged


def test_a_corrupted_slice_in_a_roi_flags_and_excludes_its_level(phantoms):
    """Random values in 30% of one ROI slice of the level the diagnosis used: that level gets an
    'implausible' flag and leaves the diagnosis (the level is found by a clean run first, so the test does
    not depend on which names the segmenter gives)."""
    from OsteoAILib.pipeline import PipelineOptions, run_pipeline

    ph = phantoms(seed=7, matrix=256, spacing=(1.2, 1.2, 1.5), levels="T11-L2")
    vol = ph.volume
    assert np.allclose(vol.direction, np.eye(3))  # the phantom is on the canonical grid: ROI boxes index it
    opts = PipelineOptions(segmenter="classical", calibration="internal", vbmd_method="calibrated-hu", n_key_images=0)
    clean = run_pipeline(vol, opts)
    target = next(lv for lv in clean.results.levels if lv.used_for_diagnosis)
    (k0, j0, i0), (k1, j1, i1) = target.extra["roi_box_kji"]
    k = (k0 + k1) // 2
    roi = clean.rois[k] == target.label
    rng = np.random.default_rng(0)
    hit = roi & (rng.random(roi.shape) < 0.3)
    vol.array[k][hit] = rng.uniform(-1000, 2000, int(hit.sum())).astype(vol.array.dtype)
    res = run_pipeline(vol, opts).results
    lv = next(x for x in res.levels if x.label == target.label)
    assert not lv.used_for_diagnosis and target.level not in res.diagnosis.levels, lv.qc
    if lv.roi_volume_mm3:  # measured: the flag must say why it is out (a stage may also refuse the ROI)
        assert any(q.startswith(f"implausible: {target.level} ROI slice k={k}") for q in lv.qc), lv.qc
    else:
        assert any(q.startswith("no_roi") for q in lv.qc), lv.qc


# ------------------------------------------------------------------------------------------ messages


def test_error_messages_escape_control_characters(tmp_path, capsys):
    folder = _edit(_series(tmp_path), lambda ds, i: _raw(ds, "PixelSpacing", b"\x1b]0;owned\x07\\1"))
    rc = cli_main(["run", str(folder), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "\x1b" not in err and "\x07" not in err and err.count("\n") == 1
    assert "\\x1b]0;owned\\x07" in err


def test_file_name_is_not_echoed(tmp_path, capsys):
    p = tmp_path / "DOE^JOHN 1957.nii.gz"
    p.write_bytes(b"garbage")
    rc = cli_main(["run", str(p), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "DOE" not in err and err.startswith("osteoai run: error: cannot read the NIfTI input")


# ------------------------------------------------------------------------------- pixel data and rescale lies


def test_pixel_format_different_on_one_slice_is_refused(tmp_path):
    msg = _error(_edit(_series(tmp_path), lambda ds, i: setattr(ds, "PixelRepresentation", 0), only={4}))
    assert msg == (
        "the pixel format (bits, sign, samples) differs between slices (1 of 12 differ from the first): not one volume"
    )


def test_truncated_pixel_data_is_refused(tmp_path):
    def cut(ds, i):
        ds.PixelData = ds.PixelData[:1000]

    assert _error(_edit(_series(tmp_path), cut, only={6})) == "a slice's pixel data is truncated (1000 of 2048 bytes)"


@pytest.mark.parametrize("slope, intercept", [(-1, -1024), (1, 1e30), (1e-9, -1024)])
def test_implausible_rescale_is_refused(tmp_path, slope, intercept):
    def lie(ds, i):
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept

    assert _error(_edit(_series(tmp_path), lie)).startswith("RescaleSlope/RescaleIntercept")


@pytest.mark.parametrize("where", [0, 6, 11])
def test_a_slice_whose_rescale_lies_is_refused(tmp_path, where):
    """One slice says intercept 0 while its pixels are stored with -1024: +1024 HU on that slice only."""

    def lie(ds, i):
        ds.RescaleIntercept = 0

    vol = read_volume(_edit(_series(tmp_path), lie, only={where}))
    with pytest.raises(InputError, match=rf"^slice k={where} differs from both neighbour slices in 100% of its voxels"):
        validate(vol)


def test_a_block_of_slices_whose_rescale_lies_is_refused(tmp_path):
    vol = read_volume(_edit(_series(tmp_path), lambda ds, i: setattr(ds, "RescaleIntercept", 0), only={4, 5, 6, 7}))
    with pytest.raises(InputError) as e:
        validate(vol)
    assert str(e.value) == (
        "slices k=3 and k=4 differ in 100% of their voxels by more than 500 HU: mis-scaled "
        "slices (a rescale that does not fit) or two series mixed"
    )


def test_multiframe_without_per_frame_groups_is_refused(tmp_path):
    def frames(ds, i):
        ds.NumberOfFrames = 2
        ds.PixelData = ds.PixelData * 2

    assert _error(_edit(_series(tmp_path), frames)) == (
        "a multi-frame DICOM file has no per-frame functional groups: its frame positions are unknown"
    )


def test_rgb_is_refused(tmp_path):
    def rgb(ds, i):
        ds.SamplesPerPixel = 3

    assert _error(_edit(_series(tmp_path), rgb)) == "3 samples per pixel: a CT has one (greyscale) sample"


def test_ctrl_c_during_start_up_is_one_line(monkeypatch, capsys):
    import OsteoAILib.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["run", "x", "--out", "y"]) == 130
    assert capsys.readouterr().err == "osteoai: interrupted\n"


def test_a_broken_non_ct_object_beside_the_series_is_ignored(tmp_path):
    folder = _series(tmp_path)
    sc = pydicom.dcmread(_files(folder)[0])
    sc.Modality, sc.NumberOfFrames, sc.SeriesInstanceUID = "OT", 3, "1.2.826.0.1.3680043.99.5"
    sc.save_as(folder / "screen_capture.dcm")
    assert read_volume(folder).shape == (12, 32, 32)
