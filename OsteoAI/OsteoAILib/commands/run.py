"""``osteoai run INPUT --out DIR``: screen one CT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from OsteoAIBaseLib.errors import CancelledError, InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="DICOM folder, or a NIfTI / NRRD / MHA file")
    p.add_argument("--out", required=True, help="output folder (created; files are replaced atomically)")
    p.add_argument("--dicom-out", action="store_true",
                   help="also write DICOM SEG/SR/key images into OUT/dicom (always done for a DICOM input)")
    p.add_argument("--cancel-file", help="stop at the next stage boundary once this file exists (leaves no results; "
                                         "used by the Slicer module's Cancel)")
    add_pipeline_arguments(p)


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--levels", help="levels to analyse, e.g. T11-L2 (default: all found)")
    p.add_argument("--calibration", default="auto", choices=["auto", "internal", "phantom", "none"])
    p.add_argument("--phantom-rods", help="phantom calibration rods as HU:mg_cm3 pairs, e.g. 10:0,95:100,190:200")
    p.add_argument("--segmenter", default="auto", choices=["auto", "model", "classical", "totalsegmentator"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--kvp", type=float, help="tube voltage when the header lacks it (default: DICOM KVP, else 120)")
    p.add_argument("--diagnostic-levels", help="levels whose mean gives the diagnosis (default: 2 of T11-L2)")
    p.add_argument("--vbmd", default="auto", choices=["auto", "ai", "calibrated-hu"], dest="vbmd_method",
                   help="vBMD estimator: the AI model when available (auto), or the plain calibrated HU")
    p.add_argument("--key-images", type=int, default=4, help="number of key images (default 4)")
    p.add_argument("--radiomics", action="store_true", help="also write radiomics.csv (pyradiomics)")
    p.add_argument("--scene", action="store_true",
                   help="also write scene.mrml for 3D Slicer (needs slicer-core); the scene holds a copy of the "
                        "whole CT volume")
    p.add_argument("--keep-identifiers", action="store_true",
                   help="write the input file name, series description and UID into results.json "
                        "(left out by default: they often identify the patient)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def parse_rods(text: str | None) -> list[tuple[float, float]] | None:
    if not text:
        return None
    try:
        pairs = [tuple(float(x) for x in item.split(":")) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"cannot read --phantom-rods {text!r}: expected HU:mg_cm3 pairs") from None
    if len(pairs) < 2 or any(len(p) != 2 for p in pairs):
        raise InputError("--phantom-rods needs at least two HU:mg_cm3 pairs")
    return pairs


def options_from_args(args):
    from ..pipeline import PipelineOptions

    if args.calibration == "phantom" and not args.phantom_rods:
        raise InputError("--calibration phantom needs --phantom-rods")
    if args.radiomics:  # before any work, not as a traceback after the whole pipeline
        import importlib.util

        if importlib.util.find_spec("radiomics") is None:
            raise InputError("--radiomics needs pyradiomics, which is not installed (pip install pyradiomics)")
    return PipelineOptions(
        levels=args.levels,
        calibration=args.calibration,
        phantom_pairs=parse_rods(args.phantom_rods),
        segmenter=args.segmenter,
        device=args.device,
        kvp=args.kvp,
        diagnostic_levels=args.diagnostic_levels,
        vbmd_method=args.vbmd_method,
        n_key_images=args.key_images,
        radiomics=args.radiomics,
        keep_identifiers=getattr(args, "keep_identifiers", False),
    )


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
            out = run_pipeline(vol, options, progress=progress,
                               cancel=(lambda: os.path.exists(cancel_file)) if cancel_file else None)
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
        print("scene.mrml holds a copy of the whole CT volume (pixel data included) beside the results: "
              "treat the output folder like the CT itself")
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
