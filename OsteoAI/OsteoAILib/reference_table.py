"""The reference tissues of the internal (phantomless) calibration, declared once.

Adding a reference tissue: one row here (its name in results.json, the physics material whose CT number
is expected at the scan's kVp, its weight in the fit), then a finder for it in reference_tissues.py.
The calibration fit, the expected HU (physics.reference_hu), the contrast check and the vBMD model's
features all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceTissue:
    name: str  # key in results.json calibration.references
    material: str  # physics.MATERIALS entry whose CT number is expected
    weight: float  # relative trust in the fit: the typical biological spread of its true CT number
    enhances: bool  # iodinated contrast raises it (aortic blood): the contrast check calibrates it by the others


REFERENCE_TISSUES: tuple[ReferenceTissue, ...] = (
    ReferenceTissue("air", "air", 1.0, False),
    ReferenceTissue("fat", "adipose", 1.0, False),
    ReferenceTissue("muscle", "muscle", 0.7, False),
    ReferenceTissue("blood", "blood", 0.8, True),
)

REFERENCE_NAMES: tuple[str, ...] = tuple(t.name for t in REFERENCE_TISSUES)
WEIGHTS: dict[str, float] = {t.name: t.weight for t in REFERENCE_TISSUES}
UNENHANCED: tuple[str, ...] = tuple(t.name for t in REFERENCE_TISSUES if not t.enhances)
