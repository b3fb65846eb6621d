"""`auto` says in results.json which segmenter and which vBMD estimator it used, and why (issue 14)."""

from __future__ import annotations

import json

import pytest
from OsteoAILib.outputs import write_outputs
from OsteoAILib.pipeline import PipelineOptions, run_pipeline
from OsteoAISegmentLib import api

SMALL = dict(seed=5, matrix=160, spacing=(1.6, 1.6, 2.0), levels="T12-L2")


@pytest.fixture(scope="module")
def phantom(phantoms):
    return phantoms(**SMALL)


def _card():
    from OsteoAISegmentLib.ai.inference import model_available, model_dir

    if not model_available():
        return None
    return json.loads((model_dir() / "model.json").read_text())


def test_choose_segmenter_names_the_segmenter_and_the_reason():
    assert api.choose_segmenter("classical") == ("classical", "classical: requested")
    used, why = api.choose_segmenter("auto")
    card = _card()
    if card is None:
        assert used == "classical" and why.startswith("auto -> classical: ")
    else:
        prefer = bool(card.get("prefer_in_auto", False))
        assert used == ("model" if prefer else "classical")
        assert why == f"auto -> {used}: models/vertebra-seg model.json prefer_in_auto is {str(prefer).lower()}"


def test_auto_falls_back_to_classical_when_the_model_is_broken(monkeypatch):
    from OsteoAISegmentLib.ai import inference

    monkeypatch.setattr(inference, "model_available", lambda: False)
    used, why = api.choose_segmenter("auto")
    assert used == "classical" and "missing or altered" in why


def test_results_json_records_both_choices(phantom, tmp_path):
    out = run_pipeline(phantom.volume, PipelineOptions(segmenter="auto", calibration="internal", vbmd_method="auto"))
    write_outputs(out, tmp_path)
    sw = json.loads((tmp_path / "results.json").read_text())["software"]
    used, why = api.choose_segmenter("auto")
    assert sw["segmenter_choice"] == why
    assert sw["segmenter"].startswith(used if used != "model" else "model")
    methods = [lv["vbmd_method"] for lv in json.loads((tmp_path / "results.json").read_text())["levels"]]
    if sw["vbmd_model"]:
        assert sw["vbmd_choice"].startswith(f"auto -> ai:{sw['vbmd_model']}: "), sw["vbmd_choice"]
        assert any(m.startswith("ai:") for m in methods)
    else:
        assert sw["vbmd_choice"].startswith("auto -> calibrated-hu: ")


def test_calibrated_hu_when_the_vbmd_model_is_missing(phantom, tmp_path, monkeypatch):
    from OsteoAILib.vbmd_model import infer

    monkeypatch.setenv(infer.ENV_VAR, str(tmp_path / "nowhere"))
    out = run_pipeline(
        phantom.volume, PipelineOptions(segmenter="classical", calibration="internal", vbmd_method="auto")
    )
    sw = out.results.software
    assert sw["segmenter_choice"] == "classical: requested"
    assert sw["vbmd_choice"].startswith("auto -> calibrated-hu: ") and "nowhere" in sw["vbmd_choice"]
    assert all(lv.vbmd_method.startswith("calibrated-hu") for lv in out.results.levels if lv.vbmd_mg_cm3 is not None)


def test_calibrated_hu_when_requested(phantom):
    out = run_pipeline(
        phantom.volume, PipelineOptions(segmenter="classical", calibration="internal", vbmd_method="calibrated-hu")
    )
    assert out.results.software["vbmd_choice"] == "calibrated-hu: requested"
