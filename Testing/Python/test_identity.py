"""PHI scan: identifiers planted in every identifying DICOM tag, in the UIDs, the file names and the folder
names never reach results.json, the tables, labelmaps, key images, the scene (node and file names), the
radiomics table, the progress lines or the printed summary.

``dicom/`` is left out on purpose: the DICOM SEG/SR there belong to the patient's study and must carry
its patient and study modules (issue 15).
"""

from __future__ import annotations

import gzip
import re

import numpy as np
import pydicom
import pytest
from OsteoAILib.cli import main as cli_main

PLANTED = {
    "PatientName": "Zyxwvut^Qwertyu",
    "PatientID": "PID98765",
    "PatientBirthDate": "19570311",
    "AccessionNumber": "ACC55511",
    "StudyDescription": "STUDYDESC Zyxwvut",
    "SeriesDescription": "SERIESDESC Qwertyu",
    "InstitutionName": "Instzyx Hospital",
    "ReferringPhysicianName": "Refdoc^Kappax",
    "StudyID": "STID4242",
    "OperatorsName": "Opername^Lambdax",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.77123456",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.88234567",
    "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.66345678",
}
FOLDER = "Qwertyu_Zyxwvut_PID98765"


def _needles() -> list[str]:
    out = set()
    for key, value in PLANTED.items():
        if key.endswith("UID"):
            out.add(value.rsplit(".", 1)[1])  # the tail is what a 'series 1.2...88234567' label would show
        else:
            out.update(p for p in re.split(r"[\^ _]", value) if len(p) >= 6)
    out.update(["99456789", "Qwertyu", "Zyxwvut", "PID98765"])
    return sorted(out)


@pytest.fixture(scope="module")
def screened(phantoms, tmp_path_factory):
    pytest.importorskip("radiomics")
    pytest.importorskip("slicer")
    from OsteoAILib.phantom import write_phantom

    root = tmp_path_factory.mktemp("phi")
    ph = phantoms(seed=11, matrix=192, spacing=(1.6, 1.6, 2.0), levels="T12-L2")
    write_phantom(ph, root / "phantom", dicom=True)
    src = root / FOLDER / "dicom"
    src.mkdir(parents=True)
    for k, f in enumerate(sorted((root / "phantom" / "dicom").rglob("*.dcm"))):
        ds = pydicom.dcmread(f)
        for key, value in PLANTED.items():
            setattr(ds, key, value)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.99456789.{k + 1}"
        ds.save_as(src / f"Zyxwvut_Qwertyu_{k:04d}.dcm")
    return root, src


def test_no_identifier_in_any_output(screened, tmp_path, capfd):
    root, src = screened
    out = tmp_path / "out"
    rc = cli_main(["run", str(src), "--out", str(out), "--scene", "--radiomics", "--segmenter", "classical"])
    printed = capfd.readouterr()
    assert rc == 0, printed.err[-2000:]
    files = [p for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] != "dicom"]
    names = {p.relative_to(out).as_posix() for p in files}
    assert {"results.json", "scene.mrml", "radiomics.csv", "vertebrae.nii.gz"} <= names
    assert "scene.mrml holds a copy of the whole CT volume" in printed.out
    import json

    from OsteoAILib.vbmd_model.infer import MODEL_VERSION

    models = json.loads((out / "results.json").read_text())["software"]["models"]
    tag = f"vbmd-mlp@{MODEL_VERSION}"
    assert models[tag]["pinned"] and len(models[tag]["files"]["weights.npz"]) == 64
    contents = {
        p: (gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()).lower() for p in files
    }  # a NIfTI's header (descrip, aux_file) is inside its gzip stream
    hits = []
    for needle in _needles():
        pat = needle.lower().encode()
        hits += [f"{needle} in {p.relative_to(out)}" for p, data in contents.items() if pat in data]
        hits += [f"{needle} in the file name {n}" for n in names if needle.lower() in n.lower()]
        hits += [
            f"{needle} in {stream}"
            for stream, text in (("stdout", printed.out), ("stderr", printed.err))
            if needle.lower() in text.lower()
        ]
    assert hits == []
    # the labelmaps are whole and on the input grid
    import SimpleITK as sitk

    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "vertebrae.nii.gz")))
    assert lab.shape == (len(list(src.iterdir())), 192, 192) and np.any(lab > 0)


def test_identifiers_only_on_request(screened):
    """--keep-identifiers writes them into results.json (and so the scene's volume name)."""
    from OsteoAIBaseLib.imageio import read_volume
    from OsteoAILib.pipeline import _input_description

    vol = read_volume(screened[1])
    assert "identifiers" not in _input_description(vol, vol)
    assert _input_description(vol, vol, keep_identifiers=True)["identifiers"] == {
        "series_description": PLANTED["SeriesDescription"],
        "series_instance_uid": PLANTED["SeriesInstanceUID"],
    }
