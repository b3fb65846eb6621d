"""``osteoai run INPUT --out DIR``: screen one CT."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="DICOM folder, or a NIfTI / NRRD / MHA file")
    p.add_argument("--out", required=True, help="output folder (created; files are replaced atomically)")
    p.add_argument("--dicom-out", action="store_true",
                   help="also write DICOM SEG/SR/key images into OUT/dicom (always done for a DICOM input)")
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
    p.add_argument("--scene", action="store_true", help="also write scene.mrml for 3D Slicer (needs slicer-core)")
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
    )


def screen(input_path, out_dir, args, truth: dict | None = None) -> int:
    from ..imageio import read_volume
    from ..outputs import write_outputs
    from ..pipeline import run_pipeline
    from .progress import TerminalProgress
    from .summary import summary_table

    options = options_from_args(args)
    progress = TerminalProgress(quiet=args.quiet)
    progress(0.0, f"reading {input_path}")
    vol = read_volume(input_path)
    out = run_pipeline(vol, options, progress=progress)
    if getattr(args, "dicom_out", False) or vol.meta.get("source") == "dicom":
        from ..dicom_out import write_dicom_outputs  # before results.json, which marks the folder complete

        progress(1.0, "writing DICOM SEG, SR and key images")
        write_dicom_outputs(out, out_dir, input_path)
    files = write_outputs(out, out_dir, scene=args.scene)
    print(summary_table(out.results, truth))
    print(f"\nWrote {len(files)} files to {out_dir}/ (results.json, results.csv, labelmaps, key_images/)")
    return 0


def main(args) -> int:
    try:
        return screen(args.input, args.out, args)
    except MemoryError:
        print("osteoai run: error: out of memory", file=sys.stderr)
        return 1
