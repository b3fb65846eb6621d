"""`auto` must not default to a model whose card does not say it beat the classical segmenter."""

from __future__ import annotations

import json

import pytest
from OsteoAISegmentLib import api


def test_auto_uses_classical_unless_the_model_card_prefers_the_model(phantoms):
    from OsteoAISegmentLib.ai.inference import model_available, model_dir

    if not model_available():
        pytest.skip("no intact model weights shipped")
    card = json.loads((model_dir() / "model.json").read_text())
    ph = phantoms(seed=3, matrix=160, spacing=(1.6, 1.6, 2.0), levels="T12-L2")
    seg = api.segment_spine(ph.volume, method="auto")
    expected = "model" if card.get("prefer_in_auto") else "classical"
    assert seg.segmenter.startswith(expected) or (expected == "model" and not seg.segmenter.startswith("classical"))


def test_unknown_segmenter_is_a_clear_error(phantoms):
    from OsteoAIBaseLib.errors import InputError

    ph = phantoms(seed=3, matrix=96, spacing=(3.0, 3.0, 3.0), levels="L1-L2")
    with pytest.raises(InputError, match="unknown segmenter"):
        api.segment_spine(ph.volume, method="magic")
