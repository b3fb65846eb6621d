"""Loading and validation: every bad input gets a clear InputError; good input keeps its geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.imageio import from_canonical, read_volume, to_canonical, volume_from_sitk
from OsteoAIBaseLib.volume import Volume
from OsteoAILib.cli import main as cli_main
from OsteoAILib.validate import validate
from support.dicom_helpers import write_series


def _nifti(tmp_path, arr, spacing=(0.8, 0.8, 2.0), direction=None, name="ct.nii.gz"):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    if direction is not None:
        img.SetDirection(direction)
    p = tmp_path / name
    sitk.WriteImage(img, str(p))
    return p


def test_dicom_series_reads_with_hu_and_geometry(tmp_path):
    vol = read_volume(write_series(tmp_path / "dcm"))
    assert vol.shape == (12, 32, 32)
    assert vol.spacing == pytest.approx((0.8, 0.8, 2.0))
    assert vol.origin == pytest.approx((-10.0, -12.0, 100.0))
    assert vol.meta["kvp"] == 120 and vol.meta["modality"] == "CT"
    assert -100 < float(vol.array[:, :, :10].mean()) < 100  # rescale intercept applied: ~0 HU


def test_thinnest_soft_kernel_series_is_chosen(tmp_path):
    write_series(tmp_path / "d", n=12, spacing=(0.8, 0.8, 2.0), kernel="LUNG")
    write_series(tmp_path / "d", n=20, spacing=(0.8, 0.8, 1.0), kernel="BONE")
    write_series(tmp_path / "d", n=12, spacing=(0.8, 0.8, 2.0), kernel="STANDARD")
    vol = read_volume(tmp_path / "d")
    assert vol.meta["kernel"] == "STANDARD"
    assert "chosen among 3 CT series" in vol.meta["series"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: write_series(t / "mr", modality="MR"), "no CT series"),
        (lambda t: write_series(t / "gap", n=14, skip=(6, 7)), "missing slices"),
        (lambda t: (t / "empty").mkdir() or (t / "empty"), "no DICOM images"),
        (lambda t: t / "nothing-here", "not found"),
        (lambda t: write_series(t / "tilt", tilt_mm_per_slice=0.6), "gantry tilt"),
    ],
)
def test_bad_dicom_inputs_raise_clear_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        read_volume(make(tmp_path))


def test_unreadable_and_2d_files(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    with pytest.raises(InputError, match="cannot read"):
        read_volume(bad)
    p2d = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20), np.int16)), str(p2d))
    with pytest.raises(InputError, match="2D"):
        read_volume(p2d)
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        read_volume(txt)


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.full((20, 16, 16), 40, np.int16), "constant"),
        (np.where(np.random.default_rng(0).random((20, 16, 16)) > 0.5, np.nan, 1.0).astype(np.float32), "NaN"),
        (np.zeros((3, 16, 16), np.int16), "slices"),
    ],
)
def test_validate_rejects_unusable_volumes(arr, message):
    with pytest.raises(InputError, match=message):
        validate(Volume(arr, (1, 1, 1)))


def test_validate_flags_non_hu_range():
    arr = np.random.default_rng(1).integers(-200, 255, (20, 16, 16)).astype(np.int16)  # fat, no air, no bone
    assert any(f.startswith("not_hu") for f in validate(Volume(arr, (1, 1, 1))))


def test_validate_refuses_mr_like_values():
    arr = np.random.default_rng(1).integers(0, 255, (20, 16, 16)).astype(np.int16)
    with pytest.raises(InputError, match="not CT"):
        validate(Volume(arr, (1, 1, 1)))


def test_canonical_roundtrip_any_direction(tmp_path):
    rng = np.random.default_rng(2)
    arr = rng.integers(-1000, 1000, (10, 12, 14)).astype(np.int16)
    # PIR-like direction: i -> posterior, j -> inferior, k -> right (as TPTBox data)
    direction = (0, 0, -1, 1, 0, 0, 0, -1, 0)
    vol = read_volume(_nifti(tmp_path, arr, (1.5, 1.0, 2.0), direction))
    can = to_canonical(vol)
    assert np.allclose(np.abs(can.direction), np.eye(3))
    assert np.all(np.diag(can.direction) > 0)
    # the same physical point keeps its value
    k, j, i = 3, 4, 5
    p = vol.index_to_lps((k, j, i))
    img = sitk.GetImageFromArray(can.array)
    img.SetSpacing(can.spacing), img.SetOrigin(can.origin), img.SetDirection(tuple(can.direction.ravel()))
    ci = img.TransformPhysicalPointToIndex(tuple(p))
    assert can.array[ci[2], ci[1], ci[0]] == arr[k, j, i]
    back = from_canonical(can.array, can, vol)
    assert np.array_equal(back, arr)


def test_ijk_to_ras_roundtrip():
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    img.SetSpacing((0.7, 0.8, 2.5)), img.SetOrigin((10, -20, 30))
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    vol = volume_from_sitk(img)
    back = Volume.from_ijk_to_ras(vol.array, vol.ijk_to_ras())
    assert back.spacing == pytest.approx(vol.spacing)
    assert back.origin == pytest.approx(vol.origin)
    assert np.allclose(back.direction, vol.direction)
    ras = vol.ijk_to_ras() @ np.array([1, 2, 3, 1.0])
    lps = img.TransformIndexToPhysicalPoint((1, 2, 3))
    assert ras[:3] == pytest.approx([-lps[0], -lps[1], lps[2]])


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    rc = cli_main(["run", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert rc == 1
    assert len(errors) == 1 and "input not found" in errors[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["ts-dicom-t11-t12", "tcia-acrin-petct-chest-4mm"])
def test_real_dicom_reads_as_gdcm_reads_it_and_passes_the_slice_checks(shared_data, name):
    """The per-slice reader gives GDCM's values and geometry on real series; the slice-consistency checks
    do not fire on them."""
    folder = shared_data / name / "dicom"
    vol = read_volume(folder)
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    img = r.Execute()
    assert np.array_equal(vol.array, sitk.GetArrayFromImage(img))
    assert vol.spacing == pytest.approx(img.GetSpacing()) and vol.origin == pytest.approx(img.GetOrigin())
    assert np.allclose(vol.direction.ravel(), img.GetDirection())
    assert vol.meta["kvp_source"] == "dicom" and vol.meta["load_qc"] == []
    qc = validate(to_canonical(vol))
    assert not [q for q in qc if q.startswith(("corrupt_slice", "blank_slice", "implausible_hu"))]
