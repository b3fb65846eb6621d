"""A small but whole screening output without a pipeline run (the output-folder tests, also in the
subprocesses they kill)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from OsteoAIBaseLib.volume import Volume
from OsteoAILib.keyimages import KeyImage
from OsteoAILib.pipeline import PipelineOutput
from OsteoAILib.results import Calibration, Diagnosis, LevelResult, Results


def _png(value: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([value % 256] * 4) for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def make_output(tag: str, n_keys: int = 2, radiomics: bool = False, size: int = 16) -> PipelineOutput:
    """A small but whole screening output (no pipeline run): labelmaps, key images, tables."""
    seed = sum(map(ord, tag))
    vol = Volume(np.full((12, size, size), seed % 100, np.int16), (1.0, 1.0, 2.0))
    vert = np.zeros(vol.shape, np.int16)
    vert[1:6, 2:-2, 2:-2], vert[6:11, 2:-2, 2:-2] = 20, 21
    rois = np.where(vert > 0, vert, 0).astype(np.int16)
    rois[:, :4] = 0
    res = Results(
        input={"source": "test", "tag": tag},
        levels=[LevelResult("L1", 20, vbmd_mg_cm3=100.0 + seed % 7), LevelResult("L2", 21)],
        diagnosis=Diagnosis(None, None, [], "test"),
        calibration=Calibration("none"),
    )
    keys = [
        KeyImage(f"{i}_axial_{tag}", "t", "axial", "L1", (0, 0, 0), (0.0, 0.0, 0.0), png=_png(seed + i))
        for i in range(n_keys)
    ]
    rad = [{"level": "L1", "feature": seed}] if radiomics else None
    return PipelineOutput(res, vol, vert, rois, key_images=keys, radiomics=rad)
