"""Recompute after an ROI edit in Slicer keeps the vBMD estimator of the automatic run (issue 11: it
used to fall back silently to calibrated HU and drop the near_threshold flag)."""

from __future__ import annotations

import copy

import pytest
from OsteoAILib.pipeline import PipelineOptions, run_pipeline


@pytest.fixture(scope="module")
def ai_run(phantoms):
    ph = phantoms(seed=11, matrix=192, spacing=(1.5, 1.5, 2.0), levels="T12-L2")
    out = run_pipeline(ph.volume, PipelineOptions(segmenter="classical", vbmd_method="auto"))
    if not any(lv.vbmd_method != "calibrated-hu" and lv.vbmd_mg_cm3 is not None for lv in out.results.levels):
        pytest.fail("the AI estimator took no level of its own training phantom")
    return out


def test_recompute_keeps_the_ai_estimate(hs, ai_run):
    from OsteoAILib import mrml

    vol = mrml.add_volume_node(hs.scene, ai_run.volume, "ct")
    nodes = mrml.add_pipeline_output(hs.scene, ai_run, volume_node=vol)
    before = {lv.level: (lv.vbmd_method, lv.vbmd_mg_cm3) for lv in ai_run.results.levels}
    means = {lv.level: lv.roi_mean_hu for lv in ai_run.results.levels}
    res = mrml.recompute_from_segmentation(hs.scene, nodes.volume, nodes.rois, copy.deepcopy(ai_run.results))
    after = {lv.level: (lv.vbmd_method, lv.vbmd_mg_cm3) for lv in res.levels}
    assert set(after) == set(before)
    # the ROIs came back through the segmentation node unchanged, and the age the run read from the header
    # (marrow fat) comes from the results, so the estimates are the same
    assert {lv.level: lv.roi_mean_hu for lv in res.levels} == pytest.approx(means)
    for level, (method, value) in before.items():
        assert after[level][0] == method, level  # unchanged ROIs: same estimator, same number
        if value is not None:
            assert after[level][1] == pytest.approx(value, abs=0.05), level
    assert sum(q.startswith("edited:") for q in res.qc) == 1
    near = [q for q in res.qc if q.startswith("near_threshold")]
    assert len(near) == len([q for q in ai_run.results.qc if q.startswith("near_threshold")])
