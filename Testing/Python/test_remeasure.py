"""One re-measure in the core (OsteoAILib.remeasure): the pipeline's numbers, and a re-measure of a
finished run from edited ROIs with the run's estimator, flags and diagnosis (issue 11)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from OsteoAIBaseLib.levels import IDS
from OsteoAILib.phantom import PhantomParams, make_phantom
from OsteoAILib.pipeline import PipelineOptions, run_pipeline
from OsteoAILib.remeasure import remeasure, remeasure_results, run_vbmd_method


@pytest.fixture(scope="module")
def ai_run():
    ph = make_phantom(PhantomParams(seed=11, matrix=160, spacing=(1.6, 1.6, 2.0), levels="T12-L2"))
    return run_pipeline(ph.volume, PipelineOptions(segmenter="classical", vbmd_method="auto"))


def _same_levels(a, b):
    assert [lv.level for lv in a] == [lv.level for lv in b]
    for x, y in zip(a, b, strict=True):
        assert (x.vbmd_method, x.qc, x.used_for_diagnosis) == (y.vbmd_method, y.qc, y.used_for_diagnosis), x.level
        for key in ("vbmd_mg_cm3", "roi_mean_hu", "roi_sd_hu"):
            assert getattr(x, key) == pytest.approx(getattr(y, key)), (x.level, key)


def test_unchanged_rois_give_the_pipeline_numbers(ai_run):
    res = ai_run.results
    assert res.software["vbmd_model"] and run_vbmd_method(res) == "auto"
    before = copy.deepcopy(res)
    again = remeasure_results(ai_run.volume, ai_run.rois, copy.deepcopy(res), note="edited: nothing")
    res = before
    _same_levels(again.levels, res.levels)
    assert any(lv.vbmd_method.startswith("ai:") for lv in again.levels)
    assert again.diagnosis == res.diagnosis
    kept = [q for q in res.qc if not q.startswith("near_threshold")]
    assert again.qc[: len(kept)] == kept and again.qc[-1] == "edited: nothing"
    near = [q for q in res.qc if q.startswith("near_threshold")]
    assert [q for q in again.qc if q.startswith("near_threshold")] == near


def test_an_erased_roi_is_reported_and_the_others_keep_their_estimate(ai_run):
    rois = ai_run.rois.copy()
    rois[rois == IDS["L1"]] = 0
    res = remeasure_results(ai_run.volume, rois, copy.deepcopy(ai_run.results))
    by = {lv.level: lv for lv in res.levels}
    assert by["L1"].vbmd_mg_cm3 is None and any(q.startswith("no_roi") for q in by["L1"].qc)
    assert "L1" not in res.diagnosis.levels
    before = {lv.level: lv for lv in ai_run.results.levels}
    for name in ("T12", "L2"):
        assert by[name].vbmd_method == before[name].vbmd_method
        assert by[name].vbmd_mg_cm3 == pytest.approx(before[name].vbmd_mg_cm3)
    assert sum(q.startswith("edited:") for q in res.qc) == 1


def test_calibrated_hu_run_stays_calibrated_hu(ai_run):
    res = copy.deepcopy(ai_run.results)
    res.software["vbmd_model"] = None
    assert run_vbmd_method(res) == "calibrated-hu"
    before = {lv.level: lv.extra.get("vbmd_calibrated_hu", lv.vbmd_mg_cm3) for lv in res.levels}  # calibrated HU
    again = remeasure_results(ai_run.volume, ai_run.rois, res)
    measured = [lv for lv in again.levels if lv.vbmd_mg_cm3 is not None]
    assert measured and all(lv.vbmd_method.startswith("calibrated-hu") for lv in measured)
    for lv in measured:  # the run's own calibrated-HU numbers, and no stale AI-side copy of them left in extra
        assert lv.vbmd_mg_cm3 == pytest.approx(before[lv.level]) and "vbmd_calibrated_hu" not in lv.extra


def test_estimator_names_come_from_the_registry(ai_run):
    from OsteoAIBaseLib.errors import InputError

    r = remeasure(ai_run.volume, ai_run.rois, ai_run.results.calibration, vbmd_method="calibrated-hu")
    assert r.vbmd_model is None and r.estimator_flags == []
    measured = [lv.level for lv in ai_run.results.levels if np.any(ai_run.rois == lv.label)]
    assert [lv.level for lv in r.levels] == measured
    with pytest.raises(InputError, match="unknown vBMD estimator 'magic'"):
        remeasure(ai_run.volume, ai_run.rois, ai_run.results.calibration, vbmd_method="magic")
