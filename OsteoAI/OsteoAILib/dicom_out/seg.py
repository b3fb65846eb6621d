"""DICOM Segmentations (highdicom) of the vertebrae and of the trabecular ROIs, one segment per level,
coded as in the Slicer terminology (SNOMED CT vertebra codes; ROIs: Tissue / Cancellous bone in that
vertebra)."""

from __future__ import annotations

import numpy as np
from OsteoAIBaseLib.levels import NAMES

from ..terminology import level_color, segment_name
from . import codes
from .common import DEVICE_SERIAL, MANUFACTURER, MODEL, SERIES, software_version
from .source import Source, frames_of
from .uids import uid


def build_seg(labelmap: np.ndarray, vol, src: Source, key: str, roi: bool, segmenter: str = "classical"):
    """A BINARY SEG, one segment per label present (numbered in cranio-caudal label order), or None when
    the labelmap is empty (a SEG needs at least one segment). Returns (dataset, {label: segment number})."""
    import highdicom as hd

    frames = frames_of(labelmap, vol, src)
    box = _bounding_box(frames)  # the spine fills a small part of a 300x512x512 grid: work on that part only
    if box is None:
        return None, {}
    labels = [int(x) for x in np.unique(frames[box]) if x != 0]
    lut = np.zeros(int(frames[box].max()) + 1, np.uint8)
    lut[labels] = np.arange(1, len(labels) + 1)
    pixels = np.zeros(frames.shape, np.uint8)
    pixels[box] = lut[frames[box]]
    from pydicom.sr.codedict import codes as dcm

    name, _, version = (segmenter or "unknown").partition("@")
    family = dcm.cid7162.MorphologicalOperations if name == "classical" else dcm.cid7162.ArtificialIntelligence
    algo = hd.AlgorithmIdentificationSequence(name=f"OsteoAI {name}", version=version or "unknown", family=family)
    descriptions = []
    for n, lab in enumerate(labels, start=1):
        level = NAMES.get(lab, str(lab))
        vertebra = codes.vertebra(level)
        rgb = np.array(level_color(lab))
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=segment_name(lab, roi),
                segmented_property_category=codes.TISSUE if roi else codes.ANATOMICAL_STRUCTURE,
                segmented_property_type=codes.CANCELLOUS_BONE if roi else vertebra,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algo,
                tracking_uid=uid(key, "track", lab, roi),
                tracking_id=segment_name(lab, roi),
                anatomic_regions=[vertebra] if roi else None,
                display_color=hd.color.CIELabColor.from_rgb(*(rgb * 255).round()),
            )
        )
    which = "seg_rois" if roi else "seg_vertebrae"
    number, description = SERIES[which]
    seg = hd.seg.Segmentation(
        source_images=src.datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=uid(key, which, "series"),
        series_number=number,
        sop_instance_uid=uid(key, which, "sop"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL,
        software_versions=software_version(),
        device_serial_number=DEVICE_SERIAL,
        content_label="TRABROI" if roi else "VERTEBRAE",
        content_description=description,
        series_description=description,
    )
    return seg, dict(zip(labels, range(1, len(labels) + 1), strict=True))


def _bounding_box(a: np.ndarray) -> tuple[slice, ...] | None:
    box = []
    for axis in range(a.ndim):
        nz = np.flatnonzero(a.any(axis=tuple(x for x in range(a.ndim) if x != axis)))
        if nz.size == 0:
            return None
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(box)
