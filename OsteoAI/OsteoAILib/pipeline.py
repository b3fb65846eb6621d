"""The screening pipeline: CT in; vertebrae, trabecular ROIs, calibrated vBMD, key images out.

Each stage is a small module of the core; this file only orders them, times them, reports
progress and assembles the :class:`~OsteoAILib.results.Results`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .results import Results
from .volume import Volume


@dataclass
class PipelineOptions:
    levels: str | None = None  # e.g. "T11-L2"; None = every level found
    calibration: str = "auto"  # auto | internal | phantom | none
    phantom_pairs: list[tuple[float, float]] | None = None  # (rod HU, rod density mg/cm3)
    segmenter: str = "auto"  # auto | model | classical | totalsegmentator
    device: str = "cpu"
    kvp: float | None = None  # overrides the DICOM tag
    diagnostic_levels: str | None = None  # default: two clean levels among T11-L2, preferring L1, L2
    vbmd_method: str = "auto"  # auto | ai | calibrated-hu
    n_key_images: int = 4
    radiomics: bool = False


@dataclass
class PipelineOutput:
    results: Results
    volume: Volume  # the input, on its own grid
    vertebrae: np.ndarray  # int16 VerSe ids on the input grid
    rois: np.ndarray  # int16 VerSe ids on the input grid (trabecular ROIs)
    bodies: np.ndarray | None = None  # vertebral bodies on the input grid
    key_images: list = field(default_factory=list)  # keyimages.KeyImage
    radiomics: list[dict] | None = None
