"""The review app's MRML side without a browser: a study's scene opened in a fresh scene, an ROI box moved and
resized, ROI voxels erased, Recompute through the bridge (the Slicer module's re-measure), and the automatic
result left as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="slicer-core is not installed")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from OsteoAILib.cli import main
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    d = tmp_path_factory.mktemp("study")
    files = write_phantom(make_phantom(PhantomParams(seed=3, matrix=160, spacing=(1.8, 1.8, 2.5), levels="T12-L2")),
                          d / "phantom")
    assert main(["run", str(files["ct"]), "--out", str(d / "run"), "--scene", "--quiet", "--segmenter",
                 "classical"]) == 0
    return d / "run"


def test_box_edits_and_erase_change_what_recompute_measures(hs, study):
    from OsteoAIWeb.review_session import ReviewSession

    sha = hashlib.sha256((study / "results.json").read_bytes()).hexdigest()
    n_before = hs.scene.GetNumberOfNodes()
    ses = ReviewSession(hs.scene, study)
    level = ses.auto.diagnosis.levels[0]
    auto = {lv.level: lv for lv in ses.auto.levels}
    assert level in ses.levels()

    ses.move_box(level, "S", 2.0)
    ses.resize_box(level, "R", -4.0)
    moved = {lv.level: lv for lv in ses.recompute().levels}
    assert moved[level].roi_volume_mm3 != pytest.approx(auto[level].roi_volume_mm3, abs=1.0)
    others = [lv for lv in auto if lv != level and auto[lv].vbmd_mg_cm3 is not None]
    for lv in others:  # the other levels keep their numbers
        assert moved[lv].vbmd_mg_cm3 == pytest.approx(auto[lv].vbmd_mg_cm3, rel=1e-6)
    assert any(q.startswith("edited:") for q in ses.current.qc)

    centre = ses.teaching(level)["roi_center_ras"]
    erased = ses.erase_axial(level, centre[2])
    assert erased > 0
    after = {lv.level: lv for lv in ses.recompute().levels}
    assert after[level].roi_volume_mm3 < moved[level].roi_volume_mm3
    assert ses.edits[-1].startswith(f"{level} ROI erased") and len(ses.edits) == 3

    t = ses.teaching(level)
    assert t["trabecular_hu"] is not None and t["cortical_hu"] is not None
    # the automatic result is read, never written; Recompute worked on a copy
    assert hashlib.sha256((study / "results.json").read_bytes()).hexdigest() == sha
    assert {lv.level: lv.vbmd_mg_cm3 for lv in ses.auto.levels} == {k: v.vbmd_mg_cm3 for k, v in auto.items()}
    ses.close()
    assert hs.scene.GetNumberOfNodes() == n_before  # a closed study leaves the scene as it found it


def test_plots_and_pdf_come_from_the_result(study, tmp_path):
    from OsteoAILib.results import Results

    from OsteoAIWeb.explain import explain
    from OsteoAIWeb.pdf import write_summary_pdf
    from OsteoAIWeb.plots import bmd_png, calibration_png

    results = Results.from_dict(json.loads((study / "results.json").read_text()))
    assert bmd_png(results)[:8] == b"\x89PNG\r\n\x1a\n" and calibration_png(results)[:4] == b"\x89PNG"
    pdf = write_summary_pdf(results, study, tmp_path / "summary.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = explain(results)
    d = results.diagnosis
    assert f"{d.vbmd_mg_cm3:.0f} mg/cm³" in text["headline"] and d.category in text["headline"]
    assert any("not a diagnosis" in x for x in text["limits"])
