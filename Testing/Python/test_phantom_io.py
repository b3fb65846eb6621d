"""Phantom files: NIfTI and DICOM round trips keep geometry and values; truth.json; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from OsteoAIBaseLib.imageio import read_volume
from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

# Odd sizes and anisotropic spacing so that swapped axes cannot pass unnoticed.
PARAMS = PhantomParams(seed=11, matrix=160, spacing=(1.6, 1.7, 2.5), levels="T12-L1", kvp=100, contrast=True)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    ph = make_phantom(PARAMS)
    out = tmp_path_factory.mktemp("phantom")
    files = write_phantom(ph, out, dicom=True)
    return ph, out, files


def _same_geometry(a, b, tol=1e-3):
    assert np.allclose(a.spacing, b.spacing, atol=tol)
    assert np.allclose(a.origin, b.origin, atol=tol)
    assert np.allclose(a.direction, b.direction, atol=1e-6)


def test_files_written(written):
    ph, out, files = written
    for name in ("ct.nii.gz", "vertebrae.nii.gz", "bodies.nii.gz", "tissues.nii.gz", "truth.json", "ct.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "dicom").glob("*.dcm"))) == ph.volume.shape[0]


def test_nifti_round_trip(written):
    ph, out, _ = written
    ct = read_volume(out / "ct.nii.gz")
    _same_geometry(ct, ph.volume)
    assert ct.array.dtype == np.int16
    assert np.array_equal(ct.array, ph.volume.array)
    assert ct.meta["kvp"] == 100.0 and ct.meta["age"] == 65.0  # from the ct.json sidecar
    for name, arr in (("vertebrae", ph.vertebrae), ("bodies", ph.bodies), ("tissues", ph.tissues)):
        lab = read_volume(out / f"{name}.nii.gz")
        _same_geometry(lab, ph.volume)
        assert np.array_equal(lab.array, arr)
    # nibabel agrees on the RAS affine (NIfTI stores RAS; our Volume is LPS)
    import nibabel as nib

    img = nib.load(out / "ct.nii.gz")
    assert np.allclose(img.affine, ph.volume.ijk_to_ras(), atol=1e-3)


def test_dicom_round_trip(written):
    ph, out, _ = written
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(out / "dicom"))
    reader.SetFileNames(names)
    img = reader.Execute()
    arr = sitk.GetArrayFromImage(img)
    assert np.allclose(img.GetSpacing(), ph.volume.spacing, atol=1e-3)
    assert np.allclose(img.GetOrigin(), ph.volume.origin, atol=1e-3)
    assert np.allclose(np.array(img.GetDirection()).reshape(3, 3), ph.volume.direction, atol=1e-6)
    assert np.array_equal(arr.astype(np.int16), ph.volume.array)  # rescale intercept applied
    import pydicom

    ds = pydicom.dcmread(names[0], stop_before_pixels=True)
    assert ds.Modality == "CT" and float(ds.KVP) == 100.0 and float(ds.RescaleIntercept) == -1024
    assert float(ds.SliceThickness) == 2.5 and ds.ConvolutionKernel == "STANDARD"
    assert float(ds.CTDIvol) > 0 and ds.PatientAge == "065Y" and str(ds.PatientName) == "OsteoAI^Phantom"
    assert ds.ContrastBolusAgent
    uids = {pydicom.dcmread(n, stop_before_pixels=True).SOPInstanceUID for n in names}
    assert len(uids) == len(names)


def test_dicom_folder_reads_through_imageio(written):
    ph, out, _ = written
    try:
        vol = read_volume(out / "dicom")
    except ImportError:
        pytest.skip("OsteoAIBaseLib.dicom not available")
    _same_geometry(vol, ph.volume)
    assert np.array_equal(vol.array.astype(np.int16), ph.volume.array)


def test_truth_json(written):
    ph, out, _ = written
    truth = json.loads((out / "truth.json").read_text())
    assert truth["params"]["seed"] == 11 and truth["params"]["kvp"] == 100 and truth["params"]["contrast"]
    assert truth["rib_pairs"] == 12 and truth["noise_sigma_hu"] > 0
    assert set(truth["reference_hu"]) >= {"air", "fat", "muscle", "blood"}
    for e in truth["levels"]:
        for key in (
            "level",
            "label",
            "vbmd_mg_cm3",
            "trabecular_hu_noise_free",
            "marrow_fat_fraction",
            "fracture",
            "fracture_ratio",
            "centre_kji",
            "heights_mm",
        ):
            assert key in e
    assert [e["level"] for e in truth["levels"] if not e["partial"]] == ["T12", "L1"]


def test_cli_writes_and_summarises(tmp_path, capsys):
    from OsteoAILib.cli import main

    rc = main(
        [
            "phantom",
            "--out",
            str(tmp_path),
            "--seed",
            "2",
            "--kvp",
            "80",
            "--dose",
            "low",
            "--levels",
            "T12-L1",
            "--bmd",
            "L1=70",
            "--fracture",
            "T12:0.3",
            "--matrix",
            "128",
            "--spacing",
            "2,2,3",
            "--rib-pairs",
            "13",
            "--hu-offset",
            "10",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "L1" in text and "70.0" in text and "wrote ct" in text
    truth = json.loads((tmp_path / "truth.json").read_text())
    lev = {e["level"]: e for e in truth["levels"]}
    assert lev["L1"]["vbmd_mg_cm3"] == 70.0 and lev["T12"]["fracture"] and truth["params"]["dose"] == "low"
    assert truth["rib_pairs"] == 13 and truth["params"]["hu_offset"] == 10.0
    assert main(["phantom", "--out", str(tmp_path), "--bmd", "L1:70"]) == 1  # one-line error, no traceback


@pytest.mark.slow
def test_default_phantom_build_and_write(tmp_path):
    import time

    t = time.perf_counter()
    ph = make_phantom(PhantomParams(seed=3))
    write_phantom(ph, tmp_path)
    assert ph.volume.shape == (300, 512, 512)
    assert time.perf_counter() - t < 60  # 20 s target on an idle machine; CI shares cores
