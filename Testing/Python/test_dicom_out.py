"""DICOM outputs of `osteoai run` (issue 15): SEGs, TID 1500 SR and key images, in the input's study,
read back with highdicom, checked by dciodvfy (dicom3tools) when it is installed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("highdicom")

from support.dicom_out import dciodvfy_errors, small_phantom_dicom


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    from OsteoAILib.cli import main

    root = tmp_path_factory.mktemp("dicom_out")
    dicom = small_phantom_dicom(root / "phantom")
    assert main(["run", str(dicom), "--out", str(root / "out"), "--quiet"]) == 0
    return dicom, root / "out"


def test_dicom_input_writes_seg_sr_and_key_images_in_the_input_study(screened):
    import highdicom as hd
    import pydicom

    ct_dir, out = screened
    ct = pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0], stop_before_pixels=True)
    results = json.loads((out / "results.json").read_text())
    d = out / "dicom"
    seg_v = hd.seg.segread(d / "seg_vertebrae.dcm")
    seg_r = hd.seg.segread(d / "seg_trabecular_rois.dcm")
    sr = hd.sr.srread(d / "sr.dcm")
    keys = [hd.imread(p) for p in sorted(d.glob("key_image_*.dcm"))]
    assert len(keys) == len(results["key_images"]) > 0
    everything = [seg_v, seg_r, sr, *keys]
    series = {x.SeriesInstanceUID for x in everything}
    assert len(series) == 4 and ct.SeriesInstanceUID not in series  # each output its own new series
    for x in everything:
        assert x.StudyInstanceUID == ct.StudyInstanceUID
        assert (x.PatientID, str(x.PatientName), x.PatientSex) == (ct.PatientID, str(ct.PatientName), ct.PatientSex)
    assert all(k.PhotometricInterpretation == "RGB" and k.pixel_array.ndim == 3 for k in keys)


def test_seg_segments_carry_snomed_codes_and_the_labelmap_voxels(screened):
    import highdicom as hd
    import nibabel as nib
    from OsteoAIBaseLib.levels import IDS
    from OsteoAILib.terminology import SNOMED_VERTEBRA

    _, out = screened
    for fname, nii, roi in (
        ("seg_vertebrae.dcm", "vertebrae.nii.gz", False),
        ("seg_trabecular_rois.dcm", "trabecular_rois.nii.gz", True),
    ):
        seg = hd.seg.segread(out / "dicom" / fname)
        lab = np.asarray(nib.load(out / nii).dataobj)
        for desc in seg.SegmentSequence:
            level = desc.SegmentLabel.split()[0]
            region = desc.AnatomicRegionSequence[0] if roi else desc.SegmentedPropertyTypeCodeSequence[0]
            assert (region.CodingSchemeDesignator, region.CodeValue) == ("SCT", SNOMED_VERTEBRA[level])
            if roi:
                assert desc.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Cancellous bone"
            mask = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[u for _, _, u in seg.get_source_image_uids()],
                segment_numbers=[desc.SegmentNumber],
                combine_segments=True,
                skip_overlap_checks=True,
                ignore_spatial_locations=True,
                assert_missing_frames_are_empty=True,
            )
            assert int(mask.astype(bool).sum()) == int((lab == IDS[level]).sum())


def test_sr_round_trip_gives_back_every_number_of_results_json(screened):
    from OsteoAILib.dicom_out.read_back import compare, read_sr

    _, out = screened
    results = json.loads((out / "results.json").read_text())
    back = read_sr(out / "dicom" / "sr.dcm")
    assert compare(results, back) == []
    assert set(back["levels"]) == {lv["level"] for lv in results["levels"]}
    assert back["diagnosis"]["category"] == results["diagnosis"]["category"]


def test_non_dicom_input_with_dicom_out_gets_its_own_study(screened, tmp_path):
    import highdicom as hd
    from OsteoAILib.cli import main
    from OsteoAILib.dicom_out.read_back import compare, read_sr

    ct_dir, _ = screened
    nii = ct_dir.parent / "ct.nii.gz"
    assert main(["run", str(nii), "--out", str(tmp_path), "--dicom-out", "--quiet"]) == 0
    d = tmp_path / "dicom"
    cts = sorted((d / "ct").glob("CT*.dcm"))
    seg = hd.seg.segread(d / "seg_vertebrae.dcm")
    assert len(cts) > 10 and seg.StudyInstanceUID == hd.sr.srread(d / "sr.dcm").StudyInstanceUID
    assert compare(json.loads((tmp_path / "results.json").read_text()), read_sr(d / "sr.dcm")) == []


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) not installed")
def test_dciodvfy_finds_no_error_in_the_outputs_or_the_phantom_series(screened):
    ct_dir, out = screened
    files = sorted((out / "dicom").glob("*.dcm")) + [sorted(ct_dir.glob("*.dcm"))[0]]
    assert len(files) >= 5
    for f in files:
        assert dciodvfy_errors(f) == [], f.name


def test_frames_of_fast_path_matches_nearest_neighbour_resampling():
    """DICOM frames flipped or transposed against the volume grid take the strided-view path: same voxels."""
    from OsteoAILib.dicom_out import source

    lab = np.random.default_rng(0).integers(0, 5, (7, 9, 11)).astype(np.int16)
    for d_col, d_row in [
        ((1, 0, 0), (0, 1, 0)),
        ((-1, 0, 0), (0, 1, 0)),
        ((0, 1, 0), (1, 0, 0)),
        ((0, -1, 0), (-1, 0, 0)),
        ((1, 0, 0), (0, 0, 1)),
        ((0, 0, -1), (0, 1, 0)),
    ]:
        d_col, d_row = np.array(d_col, float), np.array(d_row, float)
        for ijk0 in ([3, 4, 2], [10, 8, 6], [0, 0, 0], [-2, 3, 1], [3, 4, 9]):
            ijk0 = np.array(ijk0)
            fast = source._slice_fast(lab, ijk0, d_col, d_row, 6, 8)
            slow = source._slice_resampled(lab, ijk0.astype(float), d_col, d_row, 6, 8)
            assert (fast == slow).all(), (d_col, d_row, ijk0)


@pytest.mark.realdata
def test_real_dicom_series_with_blanked_uids_round_trips_and_validates(shared_data, tmp_path):
    """A real de-identified series whose SOP, study and series UIDs are blank (only the file meta keeps
    the SOP UIDs) must neither break nor invalidate the outputs."""
    from OsteoAILib.cli import main
    from OsteoAILib.dicom_out.read_back import compare, read_sr

    src = shared_data / "ts-dicom-t11-t12" / "dicom"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    assert main(["run", str(src), "--out", str(tmp_path), "--quiet"]) == 0
    assert compare(json.loads((tmp_path / "results.json").read_text()), read_sr(tmp_path / "dicom" / "sr.dcm")) == []
    if shutil.which("dciodvfy"):
        for f in sorted((tmp_path / "dicom").glob("*.dcm")):
            assert dciodvfy_errors(f) == [], f.name


def test_an_incomplete_clinical_trial_module_of_the_source_is_left_out():
    """ACRIN collections keep the Clinical Trial Subject module with an empty subject ID (a Type 1C error)."""
    from OsteoAILib.dicom_out import _drop_incomplete_trial_subject
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.ClinicalTrialSponsorName, ds.ClinicalTrialSubjectID, ds.PatientID = "ACRIN", "", "X1"
    _drop_incomplete_trial_subject(ds)
    assert "ClinicalTrialSponsorName" not in ds and "ClinicalTrialSubjectID" not in ds and ds.PatientID == "X1"
    ds.ClinicalTrialSponsorName, ds.ClinicalTrialSubjectID = "ACRIN", "013"
    _drop_incomplete_trial_subject(ds)
    assert ds.ClinicalTrialSubjectID == "013"
