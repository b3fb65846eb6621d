"""``osteoai train-segmenter``: prepare training samples and train the vertebra model.

osteoai train-segmenter prepare-real --data ../shared/data --out .data/seg
osteoai train-segmenter prepare-pseudo --data ../shared/data --out .data/seg   # classical labels, unlabelled CTs
osteoai train-segmenter prepare-phantoms --seeds 0-199 --out .data/seg [--workers 8]
osteoai train-segmenter train --samples .data/seg --real ts-abdomen-3mm,... --out models/vertebra-seg/model.pt
osteoai train-segmenter card --weights models/vertebra-seg/model.pt   # write model.json (sha256 ...)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from OsteoAIBaseLib.errors import InputError
from OsteoAIBaseLib.ranges import comma_ranges


def parse_seeds(spec: str) -> list[int]:
    """'0-2,7' -> [0, 1, 2, 7]."""
    return [s for a, b in comma_ranges(spec) for s in ([int(a)] if b is None else range(int(a), int(b) + 1))]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["prepare-real", "prepare-pseudo", "prepare-phantoms", "train", "card"])
    p.add_argument("--data", default=None, help="folder of the labelled real CTs (default ../shared/data)")
    p.add_argument("--out", default=None, help="output folder (prepare-*) or weights file (train)")
    p.add_argument("--samples", default=".data/seg", help="folder of prepared .npz samples (train)")
    p.add_argument("--seeds", default="0-159", help="phantom seeds, e.g. 0-159 (prepare-phantoms)")
    p.add_argument("--workers", type=int, default=1, help="processes for prepare-phantoms")
    p.add_argument("--real", default="", help="comma-separated real volumes to train on (train)")
    p.add_argument(
        "--pseudo",
        default="all",
        help="comma-separated pseudo-labelled volumes to train on, 'all' or 'none' (train); "
        "volumes to prepare (prepare-pseudo, default all)",
    )
    p.add_argument("--p-pseudo", type=float, default=0.25, help="share of patches from pseudo-labelled volumes")
    p.add_argument("--pseudo-weight", type=float, default=0.5, help="loss weight of pseudo-labelled patches")
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=1e9, help="wall-clock budget; the LR schedule ends with it")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--p-real", type=float, default=0.35, help="share of patches drawn from real volumes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--init-filters", type=int, default=8)
    p.add_argument("--weights", default=None, help="weights file to describe (card)")
    p.add_argument("--init", default=None, help="start training from these weights")


def _phantom_one(args):
    seed, out = args
    from .dataset import phantom_sample, save_sample

    p = Path(out) / f"phantom_{seed:04d}.npz"
    if not p.exists():
        save_sample(p, phantom_sample(seed))
    return str(p)


def _data_root(args) -> Path:
    root = Path(args.data or Path(__file__).resolve().parents[3] / ".." / "shared" / "data")
    if not root.is_dir():
        raise InputError(f"real data folder not found: {root}")
    return root


def main(args) -> int:
    if args.action == "prepare-real":
        from .dataset import prepare_real

        root = _data_root(args)
        for p in prepare_real(root, Path(args.out or ".data/seg")):
            print(p)
        return 0
    if args.action == "prepare-pseudo":
        from .dataset import prepare_pseudo

        root = _data_root(args)
        names = None if args.pseudo in ("", "all") else [n for n in args.pseudo.split(",") if n]
        try:
            prepare_pseudo(root, Path(args.out or ".data/seg"), names, log=lambda m: print(m, flush=True))
        except ValueError as e:
            raise InputError(str(e)) from None
        return 0
    if args.action == "prepare-phantoms":
        out = Path(args.out or ".data/seg")
        out.mkdir(parents=True, exist_ok=True)
        jobs = [(s, str(out)) for s in parse_seeds(args.seeds)]
        if args.workers > 1:
            from multiprocessing import get_context

            with get_context("spawn").Pool(args.workers) as pool:
                for i, p in enumerate(pool.imap_unordered(_phantom_one, jobs)):
                    print(f"[{i + 1}/{len(jobs)}] {p}", flush=True)
        else:
            for i, j in enumerate(jobs):
                print(f"[{i + 1}/{len(jobs)}] {_phantom_one(j)}", flush=True)
        return 0
    if args.action == "train":
        from .train import train

        out = Path(args.out or "models/vertebra-seg/model.pt")
        real = [r for r in args.real.split(",") if r]
        pseudo = args.pseudo if args.pseudo in ("all", "none", "") else [n for n in args.pseudo.split(",") if n]
        train(
            Path(args.samples),
            out,
            real,
            iters=args.iters,
            minutes=args.minutes,
            batch=args.batch,
            lr=args.lr,
            seed=args.seed,
            p_real=args.p_real,
            device=args.device,
            pseudo=pseudo,
            p_pseudo=args.p_pseudo,
            pseudo_weight=args.pseudo_weight,
            config={"init_filters": args.init_filters},
            init=Path(args.init) if args.init else None,
            log=lambda m: print(m, flush=True),
        )
        return 0
    if args.action == "card":
        write_card(Path(args.weights or "models/vertebra-seg/model.pt"))
        return 0
    return 2


def write_card(weights: Path, extra: dict | None = None) -> Path:
    """model.json beside the weights: architecture, preprocessing, label map, sha256, training run."""
    from OsteoAIBaseLib.atomic import write_json
    from OsteoAISegmentLib.ai import labels
    from OsteoAISegmentLib.ai.inference import sha256

    train_info = {}
    side = weights.with_suffix(".train.json")
    if side.exists():
        train_info = json.loads(side.read_text())
    card = {
        "name": "vertebra-seg",
        "version": "1.0",
        "weights": weights.name,
        "sha256": sha256(weights),
        "network": train_info.get("network", {"architecture": "SegResNet"}),
        "spacing_mm": 2.0,
        "roi_size": train_info.get("patch", [128, 112, 128]),
        "orientation": "canonical: array[k, j, i], i -> patient left, j -> posterior, k -> superior",
        "intensity": "clip(HU, -1000, 2000) / 1000",
        "semantic_classes": labels.SEM_NAMES,
        "level_classes_verse_ids": labels.LEVELS,
        "training": train_info,
        **(extra or {}),
    }
    return write_json(weights.parent / "model.json", card)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(main(p.parse_args()))
