"""The segmenters, declared once: ``osteoai run --segmenter``, the Slicer panels' combo boxes, the
parameter nodes and :func:`OsteoAISegmentLib.api.segment_spine` all read this registry.

Adding a segmenter: write its module with ``segment_with_x(vol, device, progress, cancel) ->
SpineSegmentation`` (canonical grid) and register one :class:`Choice` below; nothing else changes.
"""

from __future__ import annotations

from .registry import Choice, Registry

SEGMENTERS = Registry("segmenter", "--segmenter")


def model_unavailable() -> str | None:
    """Why the trained vertebra model cannot run here (``auto`` then runs the classical one), or None."""
    try:
        from .ai.inference import MODEL_NAME, model_available, runtime_missing
    except ImportError as e:
        return f"the vertebra model cannot be imported ({e})"
    if missing := runtime_missing():
        return f"the vertebra model cannot be imported ({missing})"
    return None if model_available() else f"{MODEL_NAME} model files are missing or altered"


def _totalsegmentator_unavailable() -> str | None:
    from .totalseg import _why_unavailable, totalsegmentator_available

    return None if totalsegmentator_available() else _why_unavailable()


def segment_classical(vol, device: str = "cpu", progress=None, cancel=None):
    """The classical segmenter under the common signature (it runs on the CPU whatever ``device`` says)."""
    from .classical import segment_classical as run

    return run(vol, progress=progress, cancel=cancel)


SEGMENTERS.register(
    Choice(
        "auto",
        "auto",
        "the trained model when its card says it beat the classical segmenter on real CT, else classical",
        "OsteoAISegmentLib.api:segment_auto",
    )
)
SEGMENTERS.register(
    Choice(
        "model",
        "model (MONAI)",
        "the trained MONAI vertebra model (models/vertebra-seg)",
        "OsteoAISegmentLib.ai.inference:segment_with_model",
        model_unavailable,
    )
)
SEGMENTERS.register(
    Choice(
        "classical",
        "classical",
        "thresholds, the spinal canal and the ribs; no model, CPU only",
        "OsteoAISegmentLib.segmenters:segment_classical",
    )
)
SEGMENTERS.register(
    Choice(
        "totalsegmentator",
        "TotalSegmentator",
        "TotalSegmentator's 'total' task, when installed with its weights",
        "OsteoAISegmentLib.totalseg:segment_with_totalsegmentator",
        _totalsegmentator_unavailable,
    )
)
