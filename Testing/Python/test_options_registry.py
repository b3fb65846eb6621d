"""The run options are declared once (OsteoAILib.options, OsteoAISegmentLib.segmenters): a segmenter
registered in one place is offered by `osteoai run`, the Slicer parameter node and panel, and runs through
the pipeline, with nothing else edited (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAIBaseLib.levels import ORDER
from OsteoAILib import options
from OsteoAILib.cli import build_parser
from OsteoAISegmentLib.registry import Choice
from OsteoAISegmentLib.segmentation import SpineSegmentation
from OsteoAISegmentLib.segmenters import SEGMENTERS

TRUTH = {}  # the phantom whose true labels the fake segmenter returns


def segment_with_truth(vol, device="cpu", progress=None, cancel=None):
    """A 'segmenter' that returns the phantom's own labels (the registry calls it like any other)."""
    ph = TRUTH["phantom"]
    assert vol.shape == ph.volume.shape
    levels = sorted((int(x) for x in np.unique(ph.vertebrae) if x), key=ORDER.index)
    return SpineSegmentation(
        vertebrae=ph.vertebrae.astype(np.int16),
        bodies=ph.bodies.astype(np.int16),
        levels=levels,
        segmenter="truth@test",
    )


@pytest.fixture
def truth_segmenter():
    choice = SEGMENTERS.register(
        Choice("truth", "phantom truth", "the phantom's own labels (test)", "test_options_registry:segment_with_truth")
    )
    yield choice
    SEGMENTERS.unregister("truth")


def _run_args(*extra):
    return build_parser().parse_args(["run", "ct.nii.gz", "--out", "out", *extra])


def test_a_registered_segmenter_is_offered_everywhere(truth_segmenter):
    from OsteoAILib.slicer_ui.parameters import osteoaiParameters, segmentParameters

    args = _run_args("--segmenter", "truth")
    assert options.options_from_args(args).segmenter == "truth"
    assert "truth" in osteoaiParameters()[0]["segmenter"][1]  # the panel's combo box and parameter node
    assert "truth" in segmentParameters()[0]["segmenter"][1]
    assert "truth" in build_parser().parse_args(["segment", "ct", "--out", "o", "--segmenter", "truth"]).segmenter
    opts = options.PipelineOptions(segmenter="truth", kvp=100.0)
    argv = options.cli_arguments(opts)  # the background command line
    assert argv[argv.index("--segmenter") + 1] == "truth" and options.options_from_args(_run_args(*argv)) == opts


def test_an_unregistered_segmenter_is_refused_in_one_line():
    from OsteoAIBaseLib.errors import InputError

    with pytest.raises(SystemExit):
        _run_args("--segmenter", "truth")
    with pytest.raises(InputError, match=r"unknown segmenter 'truth' \(expected one of auto, model, classical"):
        options.validate(options.PipelineOptions(segmenter="truth"))


def test_a_registered_segmenter_runs_through_the_pipeline(truth_segmenter):
    from OsteoAILib.phantom import PhantomParams, make_phantom
    from OsteoAILib.pipeline import PipelineOptions, run_pipeline

    TRUTH["phantom"] = ph = make_phantom(PhantomParams(seed=2, matrix=96, spacing=(2.5, 2.5, 2.5), levels="L1-L2"))
    out = run_pipeline(ph.volume, PipelineOptions(segmenter="truth", n_key_images=0))
    assert out.results.software["segmenter"] == "truth@test"
    assert out.results.software["segmenter_choice"] == "truth: requested"
    np.testing.assert_array_equal(out.vertebrae, ph.vertebrae)
    assert {"L1", "L2"} <= {lv.level for lv in out.results.levels if lv.vbmd_mg_cm3 is not None}


def test_options_round_trip_through_every_form():
    opts = options.PipelineOptions(levels="T11-L2", calibration="phantom", phantom_pairs=[(10.0, 0.0), (210.0, 150.0)],
                                   segmenter="classical", device="cuda", kvp=100.0, diagnostic_levels="L1,L2",
                                   vbmd_method="calibrated-hu", n_key_images=6, radiomics=False)  # fmt: skip
    assert options.options_from_args(_run_args(*options.cli_arguments(opts))) == opts
    assert options.options_from_settings(options.settings_from_options(opts)) == opts
    # every option has exactly one declaration: a PipelineOptions field, a flag of `osteoai run`
    fields = [f.name for f in options.dataclasses.fields(options.PipelineOptions)]
    assert fields == [o.name for o in options.OPTIONS]
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {flag for action in run._actions for flag in action.option_strings}
    assert {o.flag for o in options.OPTIONS} <= flags


def test_a_typo_in_a_panel_setting_is_one_clear_error():
    from OsteoAIBaseLib.errors import InputError

    with pytest.raises(InputError, match="HU:mg_cm3"):
        options.options_from_settings(options.Settings(phantomPairs="10-0"))


def calibrate_fixed(c):
    """A 'calibration method' with a fixed line (the registry calls it like the real ones)."""
    from OsteoAILib.results import Calibration

    return Calibration(method="fixed", slope=1.1, intercept=-5.0, kvp=c.kvp, kvp_source=c.kvp_source, qc=list(c.qc))


def test_a_registered_calibration_method_is_offered_and_runs():
    from OsteoAILib.calibration import calibrate
    from OsteoAILib.phantom import PhantomParams, make_phantom
    from OsteoAILib.slicer_ui.parameters import osteoaiParameters

    options.CALIBRATION_METHODS.register(
        Choice("fixed", "fixed line", "slope 1.1, intercept -5 (test)", "test_options_registry:calibrate_fixed")
    )
    try:
        assert options.options_from_args(_run_args("--calibration", "fixed")).calibration == "fixed"
        assert "fixed" in osteoaiParameters()[0]["calibration"][1]
        ph = make_phantom(PhantomParams(seed=2, matrix=64, spacing=(3.0, 3.0, 3.0), levels="L1"))
        cal = calibrate(ph.volume, method="fixed", kvp=100.0)
        assert (cal.method, cal.slope, cal.intercept, cal.kvp, cal.kvp_source) == ("fixed", 1.1, -5.0, 100.0, "user")
    finally:
        options.CALIBRATION_METHODS.unregister("fixed")
    with pytest.raises(SystemExit):
        _run_args("--calibration", "fixed")


def test_a_choice_that_cannot_run_here_fails_before_any_work():
    from OsteoAIBaseLib.errors import InputError

    why = "the absent package is not installed"
    SEGMENTERS.register(
        Choice(
            "absent",
            "absent",
            "needs a package this machine lacks (test)",
            "test_options_registry:segment_with_truth",
            lambda: why,
        )
    )
    try:
        with pytest.raises(InputError, match=f"^--segmenter absent cannot run here: {why}$"):
            options.options_from_args(_run_args("--segmenter", "absent"))
    finally:
        SEGMENTERS.unregister("absent")
