"""Key images as DICOM Secondary Capture (highdicom), RGB, in the input's study: a viewer shows them
next to the CT without any plug-in."""

from __future__ import annotations

import io

import numpy as np

from .common import MANUFACTURER, SERIES
from .uids import uid


def build_key_images(images: list, ref_dataset, key: str) -> list:
    import highdicom as hd
    from PIL import Image

    number, description = SERIES["key_images"]
    out = []
    for n, im in enumerate(images, start=1):
        rgb = np.asarray(Image.open(io.BytesIO(im.png)).convert("RGB"))
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=ref_dataset,
            pixel_array=rgb,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=uid(key, "key_images", "series"),
            series_number=number,
            sop_instance_uid=uid(key, "key_images", "sop", n),
            instance_number=n,
            manufacturer=MANUFACTURER,
            patient_orientation=_orientation(im.plane),
            series_description=description,
        )
        sc.DerivationDescription = im.title[:1024]
        sc.ImageComments = im.title[:10240]
        sc.ImageLaterality = "U"  # unpaired: the spine (so no series Laterality is due)
        sc.BurnedInAnnotation = "YES"  # level labels and values are drawn on the image
        out.append(sc)
    return out


def _orientation(plane: str) -> tuple[str, str]:
    # Directions of the image's rows and columns: axial seen from the feet (L, P); sagittal (P, F).
    return ("P", "F") if plane == "sagittal" else ("L", "P")
