"""How real CT and the digital phantom compare in what the vBMD model sees, and whether the model's
domain check accepts real levels.

Runs the pipeline once on every real scan in ../shared/data (both reconstructions of the lungdx
chest), computes each level's model features the way the pipeline's estimator does, and builds
phantoms through the same stages. Prints, per feature, the real and phantom min / median / max and
the share of real levels outside the phantom's range; then the model's domain verdict on every real
level (accepted, or which features are outside) and the share of real levels without an excluding
QC flag that it accepts. Nothing is cached.

Run: .venv/bin/python Testing/benchmarks/phantom_realism.py [--n-phantoms 16] [--grids realistic|varied]
     [--model models/vbmd-mlp] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data"
FIRST_SEED = 950000  # outside training (100000+) and the vbmd_accuracy benchmark's 900000-900999


def real_scans(data: Path) -> list[tuple[str, Path]]:
    """(name, path) of every CT in ``data``: ct.nii.gz or the dicom/ folder, plus second reconstructions."""
    out = []
    for d in sorted(p for p in data.iterdir() if p.is_dir()):
        main = d / "ct.nii.gz" if (d / "ct.nii.gz").exists() else d / "dicom"
        if main.exists():
            out.append((d.name, main))
        for extra in sorted(d.glob("ct-*.nii.gz")):
            out.append((f"{d.name}/{extra.name.removeprefix('ct-').removesuffix('.nii.gz')}", extra))
    return out


def real_rows(data: Path, model, log=print) -> list[dict]:
    from OsteoAIBaseLib.imageio import read_volume
    from OsteoAILib.vbmd_model import realism

    rows = []
    for name, path in real_scans(data):
        t0 = time.perf_counter()
        try:
            r, _ = realism.pipeline_rows(read_volume(path), model, name)
        except Exception as e:
            log(f"  {name}: failed ({type(e).__name__}: {str(e)[:100]})")
            continue
        log(f"  {name}: {len(r)} levels  [{time.perf_counter() - t0:.0f} s]")
        rows += r
    return rows


def phantom_rows(n: int, grids: str, model, masks: str = "truth", log=print) -> list[dict]:
    from OsteoAILib.phantom import make_phantom
    from OsteoAILib.vbmd_model import dataset, realism

    rows = []
    for i in range(n):
        p = dataset.training_params(FIRST_SEED + i, grids)
        ph = make_phantom(dataset._phantom_params(p))
        vol = dataset.scan_volume(ph, p)
        rois, cal, seg = dataset.measure(vol, masks, ph, kvp=p["kvp"])
        rows += realism.level_rows(vol, rois.labelmap, cal, seg.levels, model, source=f"phantom {p['seed']}")
    log(f"  {n} phantoms ({grids}, {masks} masks): {len(rows)} levels")
    return rows


def domain_report(rows: list[dict], log=print) -> dict:
    """Accepted share of real levels without an excluding QC flag, and the features that reject the rest."""
    from collections import Counter

    clean = [r for r in rows if not r["excluded"]]
    ok = [r for r in clean if r["domain"] is None]
    why = Counter(part.split(" ")[0] for r in clean if r["domain"] for part in r["domain"].split("; "))
    log(
        f"domain: {len(ok)} of {len(clean)} real levels without an excluding QC flag accepted "
        f"({100 * len(ok) / max(len(clean), 1):.0f}%); all levels: {sum(r['domain'] is None for r in rows)} "
        f"of {len(rows)}"
    )
    for r in rows:
        state = "in domain" if r["domain"] is None else f"OUT: {r['domain']}"
        excl = f"  [excluded: {', '.join(r['excluded'])}]" if r["excluded"] else ""
        log(f"  {r['source']:34} {r['level']:4} {state}{excl}")
    if why:
        log("rejections of clean levels by feature: " + ", ".join(f"{k} {v}" for k, v in why.most_common()))
    return {"accepted": len(ok), "clean": len(clean), "why": dict(why)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--n-phantoms", type=int, default=16)
    ap.add_argument(
        "--grids",
        choices=["realistic", "varied", "fixed"],
        default="realistic",
        help="which phantoms to compare with: the realistic training phantoms or the legacy ones",
    )
    ap.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    args = ap.parse_args()
    from OsteoAILib.vbmd_model import realism
    from OsteoAILib.vbmd_model.infer import load_model

    data = Path(args.data)
    if not data.is_dir():
        print(f"no real data at {data}: nothing to compare (skipped)")
        return 0
    model = load_model(args.model)
    print(f"model {model.tag} from {model.path}")
    print("real scans (pipeline, auto segmenter):")
    real = real_rows(data, model)
    print("phantoms:")
    ph = phantom_rows(args.n_phantoms, args.grids, model)
    print()
    print(realism.format_table(realism.summarise(real, ph)))
    print()
    domain_report(real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
