"""``osteoai evaluate-segmenter``: per-vertebra Dice, identification rate and time, per segmenter,
on the labelled real CTs and on held-back phantom seeds.

Identification (as in VerSe): a level is identified when the predicted vertebra with that label has
its centroid within 20 mm of the true centroid and the true centroid nearest to it is that level.
"Fully in view" = the true vertebra touches no face of the scan; the issue's targets are on those.
The model's own training used some of the real volumes: ``--cross-validation`` evaluates each real
volume with the fold model that did not see it (models/vertebra-seg/cv/<fold>/).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from OsteoAIBaseLib import levels as lv
from scipy import ndimage

ID_MM = 20.0
HELD_BACK_SEEDS = "1000-1003"  # training uses seeds below 1000


def centroids_mm(lab: np.ndarray, spacing_ijk, ids) -> dict[int, np.ndarray]:
    sp = np.asarray(spacing_ijk, float)[::-1]
    out = {}
    for v in ids:
        m = lab == v
        if m.any():
            out[int(v)] = np.asarray(ndimage.center_of_mass(m)) * sp
    return out


def touches_edge(mask: np.ndarray) -> bool:
    return bool(
        mask[0].any()
        or mask[-1].any()
        or mask[:, 0].any()
        or mask[:, -1].any()
        or mask[:, :, 0].any()
        or mask[:, :, -1].any()
    )


def score_case(pred: np.ndarray, truth: np.ndarray, spacing_ijk) -> list[dict]:
    """One row per true level: dice, identified, fully_in_view, centroid error."""
    true_ids = [int(v) for v in np.unique(truth) if v and v != 26]
    tc = centroids_mm(truth, spacing_ijk, true_ids)
    pred_ids = [int(v) for v in np.unique(pred) if v]
    pc = centroids_mm(pred, spacing_ijk, pred_ids)
    rows = []
    for v in true_ids:
        t = truth == v
        p = pred == v
        inter = np.logical_and(t, p).sum()
        dice = 2.0 * inter / (t.sum() + p.sum()) if (t.sum() + p.sum()) else 0.0
        ident, err = False, None
        if v in pc:
            err = float(np.linalg.norm(pc[v] - tc[v]))
            nearest = min(tc, key=lambda u: np.linalg.norm(pc[v] - tc[u]))
            ident = err <= ID_MM and nearest == v
        rows.append(
            {
                "level": lv.NAMES.get(v, str(v)),
                "id": v,
                "dice": round(float(dice), 4),
                "identified": ident,
                "centroid_err_mm": None if err is None else round(err, 1),
                "fully_in_view": not touches_edge(t),
            }
        )
    return rows


def summarise(rows: list[dict]) -> dict:
    full = [r for r in rows if r["fully_in_view"]]

    def agg(rs):
        if not rs:
            return {"n": 0, "mean_dice": None, "identification": None}
        return {
            "n": len(rs),
            "mean_dice": round(float(np.mean([r["dice"] for r in rs])), 4),
            "identification": round(float(np.mean([r["identified"] for r in rs])), 4),
        }

    return {"fully_in_view": agg(full), "all": agg(rows)}


def real_cases(root: Path, names=None):
    from .dataset import REAL, real_truth

    for name in names or REAL:
        vol, verse, _ = real_truth(root, name)
        yield name, vol, verse


def phantom_cases(seeds: list[int]):
    from OsteoAILib.phantom import make_phantom

    from .dataset import random_phantom_params

    for s in seeds:
        params, _ = random_phantom_params(s)
        ph = make_phantom(params)
        yield f"phantom-{s}", ph.volume, np.asarray(ph.vertebrae).astype(np.int16)


def run_segmenter(method: str, vol, device: str, model_dir: Path | None = None):
    from OsteoAISegmentLib.api import segment_spine

    old = os.environ.get("OSTEOAI_MODELS")
    if model_dir is not None:  # a cross-validation fold: point the model loader at it
        os.environ["OSTEOAI_MODELS"] = str(model_dir.parent)
    try:
        t0 = time.perf_counter()
        seg = segment_spine(vol, method=method, device=device)
        return seg, time.perf_counter() - t0
    finally:
        if model_dir is not None:
            if old is None:
                os.environ.pop("OSTEOAI_MODELS", None)
            else:
                os.environ["OSTEOAI_MODELS"] = old


def _fold_for(name: str, model_root: Path) -> Path | None:
    """The cross-validation fold whose training set did not include real volume ``name``."""
    cv = model_root / "cv"
    if not cv.is_dir():
        return None
    for card in sorted(cv.glob("*/vertebra-seg/model.json")):
        info = json.loads(card.read_text())
        if name in info.get("held_out", []):
            return card.parent
    return None


def evaluate(
    segmenters: list[str],
    real_root: Path | None,
    real_names,
    seeds: list[int],
    device: str = "cpu",
    cross_validation: bool = False,
    log=print,
) -> dict:
    from OsteoAISegmentLib.ai.inference import model_dir

    cases = []
    if real_root is not None:
        cases += [("real", *c) for c in real_cases(real_root, real_names)]
    if seeds:
        cases += [("phantom", *c) for c in phantom_cases(seeds)]
    report = {"id_threshold_mm": ID_MM, "device": device, "cross_validation": cross_validation, "segmenters": {}}
    for method in segmenters:
        per_case = []
        for kind, name, vol, truth in cases:
            fold = None
            if method == "model" and cross_validation and kind == "real":
                fold = _fold_for(name, model_dir().parent / "vertebra-seg")
                if fold is None:
                    log(f"  {method:>16} {name}: no cross-validation fold holds this volume out")
                    continue
            try:
                seg, secs = run_segmenter(method, vol, device, fold)
                rows = score_case(seg.vertebrae, truth, vol.spacing)
                entry = {
                    "kind": kind,
                    "case": name,
                    "seconds": round(secs, 2),
                    "levels": rows,
                    "predicted": [lv.NAMES.get(v, str(v)) for v in seg.levels],
                    "qc": seg.qc,
                    "fold": fold.parent.name if fold else None,
                    "summary": summarise(rows),
                }
            except Exception as e:  # one failing case must not hide the others
                entry = {"kind": kind, "case": name, "error": f"{type(e).__name__}: {e}"[:300]}
            per_case.append(entry)
            log(_case_line(method, entry))
        report["segmenters"][method] = {"cases": per_case, "summary": _overall(per_case)}
    return report


def _overall(per_case):
    out = {}
    for kind in ("real", "phantom"):
        rows = [r for c in per_case if c["kind"] == kind and "levels" in c for r in c["levels"]]
        secs = [c["seconds"] for c in per_case if c["kind"] == kind and "seconds" in c]
        errs = sum(1 for c in per_case if c["kind"] == kind and "error" in c)
        out[kind] = {
            **summarise(rows),
            "mean_seconds": round(float(np.mean(secs)), 2) if secs else None,
            "errors": errs,
        }
    return out


def _case_line(method, e):
    if "error" in e:
        return f"  {method:>16} {e['case']:<24} ERROR {e['error']}"
    s = e["summary"]
    f, a = s["fully_in_view"], s["all"]
    fd = "-" if f["mean_dice"] is None else f"{f['mean_dice']:.3f}"
    fi = "-" if f["identification"] is None else f"{f['identification']:.0%}"
    return (
        f"  {method:>16} {e['case']:<24} full n={f['n']} dice {fd} id {fi} | all n={a['n']} dice "
        f"{a['mean_dice']:.3f} id {a['identification']:.0%} | {e['seconds']:.1f}s | "
        f"pred {','.join(e['predicted'])}"
    )


def print_table(report, out=print):
    out("")
    out(
        f"{'segmenter':>16} {'data':<8} {'full: n':>8} {'Dice':>6} {'ident':>6} {'all: n':>7} {'Dice':>6} "
        f"{'ident':>6} {'s/case':>7} {'errors':>6}"
    )
    for m, r in report["segmenters"].items():
        for kind, s in r["summary"].items():
            f, a = s["fully_in_view"], s["all"]

            def fmt(x, pct=False):
                return "-" if x is None else (f"{x:.0%}" if pct else f"{x:.3f}")

            out(
                f"{m:>16} {kind:<8} {f['n']:>8} {fmt(f['mean_dice']):>6} {fmt(f['identification'], True):>6} "
                f"{a['n']:>7} {fmt(a['mean_dice']):>6} {fmt(a['identification'], True):>6} "
                f"{fmt(s['mean_seconds']):>7} {s['errors']:>6}"
            )


def add_arguments(p: argparse.ArgumentParser) -> None:
    from OsteoAISegmentLib.segmenters import SEGMENTERS

    named = ",".join(n for n in SEGMENTERS.names() if n != "auto")
    p.add_argument("--segmenters", default="classical,model", help=f"comma list of {named}")
    p.add_argument("--phantom-seeds", default=HELD_BACK_SEEDS, help="held-back phantom seeds ('' for none)")
    p.add_argument("--data", default=None, help="labelled real CTs (default ../shared/data; 'none' to skip)")
    p.add_argument("--real", default="", help="comma list of real volumes (default: all labelled ones)")
    p.add_argument(
        "--cross-validation",
        action="store_true",
        help="score the model on each real volume with the fold that did not train on it",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="write the full report as JSON here")


def main(args) -> int:
    from OsteoAIBaseLib.atomic import write_json
    from OsteoAISegmentLib.segmenters import SEGMENTERS

    from .command import parse_seeds

    segs = [SEGMENTERS.get(s.strip()).name for s in args.segmenters.split(",") if s.strip()]  # InputError if unknown
    root = None
    if (args.data or "").lower() != "none":
        root = Path(args.data) if args.data else Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
        if not root.is_dir():
            print(f"real data not found at {root}: phantoms only")
            root = None
    names = [n for n in args.real.split(",") if n] or None
    report = evaluate(segs, root, names, parse_seeds(args.phantom_seeds or ""), args.device, args.cross_validation)
    print_table(report)
    if args.out:
        write_json(args.out, report)
        print(f"report written to {args.out}")
    return 0
