"""Names the bridge writes into a scene: node attribute prefix, terminology contexts and codes."""

from __future__ import annotations

MODULE_NAME = "OsteoAI"
ATTR = "OsteoAI."  # prefix of every node attribute / segment tag this bridge writes
TERMINOLOGY_CONTEXT = "Segmentation category and type - OsteoAI"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY_ANATOMY = ("SCT", "123037004", "Anatomical Structure")
CATEGORY_TISSUE = ("SCT", "85756007", "Tissue")
TYPE_CANCELLOUS_BONE = ("SCT", "4421005", "Cancellous bone")
BINARY_LABELMAP = "Binary labelmap"
