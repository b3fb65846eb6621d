"""``osteoai segment INPUT --out DIR``: label the vertebrae of one CT, nothing else.

What the OsteoAISegment Slicer module runs in its background process (the same progress lines and
``--cancel-file`` as ``osteoai run``). Writes, on the input's own grid:

- ``vertebrae.nii.gz`` and ``bodies.nii.gz``: int16 VerSe ids (whole vertebra, vertebral body);
- ``segmentation.json``: the segmenter that ran and why, its QC flags, the levels found and what it
  measured on the way (rib pairs, levels cut by the scan).
"""

from __future__ import annotations

import argparse
import os

JSON_INFO_KEYS = ("rib_pairs", "partial_levels", "segmenter_choice")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..options import add_arguments as add_run_options

    p.add_argument("input", help="DICOM folder, or a NIfTI / NRRD / MHA file")
    p.add_argument("--out", required=True, help="output folder (created; files are replaced atomically)")
    p.add_argument("--cancel-file", help="stop at the next stage boundary once this file exists")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_run_options(p, names=("segmenter", "device"))


def main(args) -> int:
    import numpy as np
    from OsteoAIBaseLib.atomic import write_json
    from OsteoAIBaseLib.errors import CancelledError
    from OsteoAIBaseLib.imageio import from_canonical, read_volume, to_canonical, write_volume
    from OsteoAISegmentLib.api import segment_spine

    from ..output_folder import check_output_dir, output_lock
    from .progress import TerminalProgress
    from .run import _remove_if_created

    existed = os.path.exists(args.out)
    out_dir = check_output_dir(args.out)
    cancel_file = args.cancel_file
    with output_lock(out_dir):
        progress = TerminalProgress(quiet=args.quiet)
        progress(0.0, "reading the input")
        vol = read_volume(args.input)
        canonical = to_canonical(vol)
        try:
            seg = segment_spine(
                canonical,
                method=args.segmenter,
                device=args.device,
                progress=progress,
                cancel=(lambda: os.path.exists(cancel_file)) if cancel_file else None,
            )
        except CancelledError:
            _remove_if_created(out_dir, existed)  # as osteoai run: a cancelled run leaves no folder behind
            raise
        for name, labels in (("vertebrae", seg.vertebrae), ("bodies", seg.bodies)):
            on_input = from_canonical(np.asarray(labels, np.int16), canonical, vol)
            write_volume(vol, out_dir / f"{name}.nii.gz", on_input.astype(np.int16))
        info = {k: v for k, v in (seg.info or {}).items() if k in JSON_INFO_KEYS}
        write_json(
            out_dir / "segmentation.json",
            {"segmenter": seg.segmenter, "qc": list(seg.qc), "levels": [int(x) for x in seg.levels], "info": info},
        )
        progress(1.0, "segmentation done")
    print(
        f"{len(seg.levels)} vertebrae labelled ({seg.segmenter}); wrote vertebrae.nii.gz, bodies.nii.gz and "
        f"segmentation.json to {out_dir}"
    )
    return 0
