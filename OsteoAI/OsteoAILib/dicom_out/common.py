"""What every OsteoAI DICOM output shares: equipment, series numbers, series descriptions."""

from __future__ import annotations

MANUFACTURER = "OsteoAI"
MODEL = "OsteoAI opportunistic screening"
DEVICE_SERIAL = "0"
# Series numbers well above a scanner's own (1-20), in a fixed order a viewer lists them in.
SERIES = {
    "seg_vertebrae": (9701, "OsteoAI vertebrae"),
    "seg_rois": (9702, "OsteoAI trabecular ROIs"),
    "sr": (9703, "OsteoAI BMD report"),
    "key_images": (9704, "OsteoAI key images"),
}


def software_version() -> str:
    from .. import __version__

    return f"osteoai {__version__}"
