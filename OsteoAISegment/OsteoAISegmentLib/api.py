"""Public entry point of the segmentation stage: one result type, one dispatcher.

Every segmenter (registered in :mod:`OsteoAISegmentLib.segmenters`) returns a
:class:`SpineSegmentation` on the canonical grid of the volume it was given.
"""

from __future__ import annotations

from collections.abc import Callable

from OsteoAIBaseLib.volume import Volume

from .segmentation import SpineSegmentation


def _model_preferred() -> bool:
    """Whether ``auto`` should run the trained model: its weights must be intact AND its model card must
    say it beat the classical segmenter on held-out real CT (``"prefer_in_auto": true`` in model.json).
    A model that loses on real scans stays available as ``method="model"`` but is never the default."""
    return _auto_choice()[0] == "model"


def _auto_choice() -> tuple[str, str]:
    """(segmenter ``auto`` runs, why), see :func:`_model_preferred`."""
    from .segmenters import model_unavailable

    try:
        if why := model_unavailable():
            return "classical", why
        import json

        from .ai.inference import MODEL_NAME, model_dir

        card = json.loads((model_dir() / "model.json").read_text())
        prefer = bool(card.get("prefer_in_auto", False))
        return (
            "model" if prefer else "classical"
        ), f"models/{MODEL_NAME} model.json prefer_in_auto is {str(prefer).lower()}"
    except Exception as e:  # a broken model install must not stop the classical fallback
        return "classical", f"the vertebra model card cannot be read ({str(e).strip()[:120]})"


def choose_segmenter(method: str = "auto") -> tuple[str, str]:
    """(segmenter :func:`segment_spine` runs for ``method``, why), e.g.
    ``("classical", "auto -> classical: models/vertebra-seg model.json prefer_in_auto is false")``."""
    from .segmenters import SEGMENTERS

    method = SEGMENTERS.get(method).name  # InputError naming the registered ones
    if method != "auto":
        return method, f"{method}: requested"
    used, why = _auto_choice()
    return used, f"auto -> {used}: {why}"


def segment_spine(
    vol: Volume,
    method: str = "auto",
    device: str = "cpu",
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SpineSegmentation:
    """Segment and label the vertebrae of a canonical volume (see imageio.to_canonical).

    Raises InputError when the volume shows no spine or ``method`` is not a registered segmenter.
    """
    from .segmenters import SEGMENTERS

    method, why = choose_segmenter(method)
    seg = SEGMENTERS.get(method).load()(vol, device=device, progress=progress, cancel=cancel)
    seg.info.setdefault("segmenter_choice", why)  # which segmenter ran and why (results.json software)
    return seg


def segment_auto(vol: Volume, device: str = "cpu", progress=None, cancel=None) -> SpineSegmentation:
    """The ``auto`` entry of the registry: what :func:`choose_segmenter` picks."""
    return segment_spine(vol, "auto", device=device, progress=progress, cancel=cancel)
