"""``osteoai demo``: build the default digital phantom, screen it, and print the result beside the truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .run import add_pipeline_arguments, screen


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="osteoai-demo", help="output folder (default ./osteoai-demo)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed")
    add_pipeline_arguments(p)


def main(args) -> int:
    from ..phantom import PhantomParams, make_phantom, write_phantom

    out = Path(args.out)
    print(f"Building the default digital phantom (seed {args.seed}) ...")
    ph = make_phantom(PhantomParams(seed=args.seed))
    files = write_phantom(ph, out / "phantom")
    truth = json.loads(Path(files["truth"]).read_text()) if "truth" in files else ph.truth
    print(f"Phantom written to {out / 'phantom'}/; screening {files['ct']}\n")
    return screen(files["ct"], out, args, truth=truth)
