"""``osteoai run INPUT --out DIR``: screen one CT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from OsteoAIBaseLib.errors import CancelledError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="DICOM folder, or a NIfTI / NRRD / MHA file")
    p.add_argument("--out", required=True, help="output folder (created; files are replaced atomically)")
    p.add_argument(
        "--dicom-out",
        action="store_true",
        help="also write DICOM SEG/SR/key images into OUT/dicom (always done for a DICOM input)",
    )
    p.add_argument(
        "--cancel-file",
        help="stop at the next stage boundary once this file exists (leaves no results; "
        "used by the Slicer module's Cancel)",
    )
    add_pipeline_arguments(p)


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """The run options (``OsteoAILib.options``) and the output switches of run, batch and demo."""
    from .. import options

    options.add_arguments(p)
    p.add_argument(
        "--scene",
        action="store_true",
        help="also write scene.mrml for 3D Slicer (needs slicer-core); the scene holds a copy of the whole CT volume",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def options_from_args(args):
    """PipelineOptions from the parsed arguments, checked before any work (one-line InputError)."""
    from .. import options

    return options.options_from_args(args)


def screen(input_path, out_dir, args, truth: dict | None = None) -> int:
    from OsteoAIBaseLib.imageio import read_volume

    from ..output_folder import MIN_FREE_BYTES, check_output_dir, output_lock
    from ..outputs import write_outputs
    from ..pipeline import run_pipeline
    from .progress import TerminalProgress
    from .summary import summary_table

    options = options_from_args(args)
    # The output folder is checked and locked before any work: a bad --out fails in a second, and a
    # second run into the same folder stops instead of mixing two results.
    cancel_file = getattr(args, "cancel_file", None)
    existed = Path(out_dir).exists()
    out_dir = check_output_dir(out_dir, MIN_FREE_BYTES + _scene_bytes(input_path, args.scene))
    with output_lock(out_dir):
        progress = TerminalProgress(quiet=args.quiet)
        progress(0.0, "reading the input")
        vol = read_volume(input_path)
        try:
            out = run_pipeline(
                vol, options, progress=progress, cancel=(lambda: os.path.exists(cancel_file)) if cancel_file else None
            )
        except CancelledError:
            _remove_if_created(out_dir, existed)
            raise
        extra = None
        if getattr(args, "dicom_out", False) or vol.meta.get("source") == "dicom":
            from ..dicom_out import write_dicom_outputs

            def extra(stage):  # into the staging folder: committed, listed and replaced with the rest
                progress(1.0, "writing DICOM SEG, SR and key images")
                write_dicom_outputs(out, stage, input_path)

        scene = None
        if args.scene:  # the MRML bridge writes it; it needs slicer-core, imported only when asked for
            from ..mrml import write_scene as scene
        files = write_outputs(out, out_dir, scene=scene, extra=extra)
    print(summary_table(out.results, truth))
    print(f"\nWrote {len(files)} files to the output folder (results.json, results.csv, labelmaps, key_images/)")
    if args.scene:
        print(
            "scene.mrml holds a copy of the whole CT volume (pixel data included) beside the results: "
            "treat the output folder like the CT itself"
        )
    return 0


def _remove_if_created(out_dir, existed: bool) -> None:
    """A cancelled run leaves no result folder behind (one it did not create keeps its old content)."""
    import shutil

    if not existed:
        shutil.rmtree(out_dir, ignore_errors=True)


def _scene_bytes(input_path, scene: bool) -> int:
    """Room for the CT copy a scene carries: about the input's own size."""
    if not scene:
        return 0
    from pathlib import Path

    p = Path(input_path)
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.stat().st_size * 4  # a compressed NIfTI's CT copy is written less compressed
    except OSError:
        return 0


def main(args) -> int:
    try:
        return screen(args.input, args.out, args)
    except MemoryError:
        print("osteoai run: error: out of memory", file=sys.stderr)
        return 1
