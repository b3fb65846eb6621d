"""Standard codes for segments: SNOMED CT per vertebra (DICOM CID 7603 "Vertebra"), as 3D Slicer's
terminology entries expect them, and a colour per level.

The Slicer modules' ``.term.json`` and ``vertebrae.seg.nrrd`` both come from this one table.
"""

from __future__ import annotations

import colorsys

from OsteoAIBaseLib.levels import NAMES

SNOMED_VERTEBRA: dict[str, str] = {
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003",
    "C6": "36054005", "C7": "87391001",
    "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006", "T5": "56401006",
    "T6": "45296009", "T7": "62487009", "T8": "11068009", "T9": "82687006", "T10": "7610001",
    "T11": "12989004", "T12": "23215003",
    "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003",
}  # fmt: skip
SNOMED_CANCELLOUS_BONE = ("SCT", "4421005", "Cancellous bone")  # trabecular ROI content
CATEGORY_TISSUE = ("SCT", "85756007", "Tissue")
TYPE_BONE = ("SCT", "272673000", "Bone")
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"


def level_color(label: int) -> tuple[float, float, float]:
    """Distinct, stable colour per level: hue walks the spine so neighbours differ clearly."""
    hue = (int(label) * 0.382) % 1.0  # golden-ratio steps
    return colorsys.hsv_to_rgb(hue, 0.65, 0.95)


def terminology_entry(level: str, roi: bool = False) -> str:
    """Slicer terminology string: category~type~modifier~anatomic context~region~region modifier."""
    code = SNOMED_VERTEBRA.get(level)
    region = f"SCT^{code}^{level} vertebra" if code else "^^"
    typ = SNOMED_CANCELLOUS_BONE if roi else TYPE_BONE
    return f"{CATEGORY_CONTEXT}~{'^'.join(CATEGORY_TISSUE)}~{'^'.join(typ)}~^^~{ANATOMIC_CONTEXT}~{region}~^^"


def segment_name(label: int, roi: bool = False) -> str:
    return f"{NAMES[int(label)]} {'trabecular ROI' if roi else 'vertebra'}"
