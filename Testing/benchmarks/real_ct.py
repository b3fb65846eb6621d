"""Vertebrae found, split and named on every real CT in ../shared/data (landmarks or labels).

For each scan and segmenter: identification of the reference levels fully in view, ROI placement
(share of ROI voxels between the reference endplates of their own level, and name-blind of the
body they sit in), Dice where masks exist, false `fracture` flags, wrong names without
`label_uncertain`; then the same scan with HU' = 1.08 * HU - 20 and with sigma 25 HU noise: level
names must not change, ROI Dice against the plain run must stay >= 0.95.

Run: .venv/bin/python Testing/benchmarks/real_ct.py [--segmenters classical,model]
     [--scans qin,ricord] [--variants base,scaled,noise] [--json out.json] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from real_data import true_labels  # the labelled scans are read exactly as real_data.py reads them

REPO = Path(__file__).resolve().parents[2]
# scan folder -> (CT file, kind, labels file)
LANDMARKED = {
    "tcia-qin-chest-1mm": "ct.nii.gz",
    "tcia-ricord-chest-1.25mm": "ct.nii.gz",
    "tcia-cmbcrc-chest-2.5mm": "ct.nii.gz",
    "tcia-lungdx-chest-5mm": "ct.nii.gz",
    "tcia-lungdx-chest-5mm:lung-kernel": "ct-lung-kernel.nii.gz",
    "tcia-acrin-petct-chest-4mm": "dicom",
    "tcia-cptac-thoracolumbar-5mm": "ct.nii.gz",
    "tcia-acrin-petct-abdomen-4mm": "ct.nii.gz",
}
LABELLED = {
    "ts-abdomen-3mm": ("ct.nii.gz", "labels-totalseg-v2.nii.gz", "totalseg"),
    "ts-dicom-t11-t12": ("dicom", "labels-totalseg-v2.nii.gz", "totalseg"),
    "ts-thorax-cta-1.5mm": ("ct.nii.gz", "mask-T12.nii.gz", "T12"),
    "tptbox-lumbar-1.5mm": ("ct.nii.gz", "labels-verse.nii.gz", "verse"),
}


def segment(canonical, segmenter: str):
    """Segmentation, ROIs and per-level QC exactly as the pipeline makes them."""
    from OsteoAILib import roi
    from OsteoAILib.pipeline import level_context
    from OsteoAISegmentLib.api import segment_spine

    seg = segment_spine(canonical, method=segmenter)
    rois = roi.place_rois(canonical, seg)
    level_qc, _extra = level_context(canonical, seg, rois, None)
    return seg, rois, level_qc


def variant(canonical, name: str, seed: int = 0):
    if name == "scaled":
        return canonical.with_array((1.08 * canonical.array.astype(np.float32) - 20).astype(np.float32))
    if name == "noise":
        rng = np.random.default_rng(seed)
        noisy = canonical.array.astype(np.float32) + rng.normal(0, 25, canonical.shape).astype(np.float32)
        return canonical.with_array(noisy)
    return canonical


def score_labelled(truth, seg, rois, level_qc, scan_qc) -> dict:
    """The landmark scores' equivalents on a labelled scan: majority name in each true vertebra."""
    from OsteoAIBaseLib.levels import NAMES
    from OsteoAILib.segmenter_training.evaluate import touches_edge
    from OsteoAISegmentLib.landmark_scoring import totals

    uncertain = any(f.startswith("label_uncertain") for f in scan_qc)
    rows, roi_rows = [], []
    labs = sorted(int(x) for x in np.unique(truth) if x in NAMES)
    # as the readers' landmark files count them: a vertebra at least half in view (a 3-slice sliver
    # of the next vertebra at the scan's edge, which the label files also hold, is no level to name)
    size = {lab: int((truth == lab).sum()) for lab in labs}
    whole = [size[lab] for lab in labs if not touches_edge(truth == lab)]
    half = 0.5 * float(np.median(whole)) if whole else 0.0
    for lab in labs:
        m = truth == lab
        if size[lab] < half:
            continue
        pred = seg.vertebrae[m]
        p = int(np.bincount(pred[pred > 0]).argmax()) if (pred > 0).any() else 0
        pm = seg.vertebrae == lab
        dice = float(2 * (pm & m).sum() / (pm.sum() + m.sum()))
        rows.append(
            {
                "level": NAMES[lab],
                "full": not touches_edge(m),
                "predicted": NAMES.get(p),
                "identified": p == lab,
                "wrong_unflagged": bool(p and p != lab and not uncertain),
                "fracture_flag": any(f.startswith("fracture") for f in level_qc.get(p, [])),
                "dice": dice,
            }
        )
    for lab in (int(v) for v in np.unique(rois.labelmap) if v):
        r = rois.labelmap == lab
        under = truth[r]
        named = float((under == lab).mean())
        # a scan labelled in part (one vertebra's mask): an ROI mostly outside every mask sits in an
        # unlabelled body and says nothing about placement
        home = int(np.bincount(under[under > 0]).argmax()) if (under > 0).mean() >= 0.5 else 0
        roi_rows.append(
            {
                "roi": NAMES.get(lab),
                "voxels": int(r.sum()),
                "inside_named": named if lab in truth else None,
                "inside_body": float((under == home).mean()) if home else None,
            }
        )
    return {**totals(rows, roi_rows, uncertain), "missing_uncertain_flag": False}


def run_case(case: str, data: Path, segmenter: str, variants: list[str], noise_seed: int = 0) -> dict:
    from OsteoAIBaseLib.imageio import read_volume, to_canonical
    from OsteoAIBaseLib.levels import NAMES
    from OsteoAISegmentLib.landmark_scoring import load_landmarks, roi_dice, score_discs, score_scan

    folder_name = case.split(":")[0]
    folder = data / folder_name
    labelled = case in LABELLED
    ct = LABELLED[case][0] if labelled else LANDMARKED[case]
    vol = read_volume(folder / ct)
    canonical = to_canonical(vol)
    out = {"case": case, "segmenter": segmenter}
    base = None
    for name in variants:
        t0 = time.perf_counter()
        try:
            seg, rois, level_qc = segment(variant(canonical, name, noise_seed), segmenter)
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc(limit=3)
            continue
        dt = time.perf_counter() - t0
        if labelled:
            truth = true_labels(folder / LABELLED[case][1], LABELLED[case][2], canonical)
            s = score_labelled(truth, seg, rois, level_qc, seg.qc)
        else:
            ref = load_landmarks(folder / "landmarks.json")
            s = score_scan(ref, canonical, seg.bodies, rois.labelmap, seg.qc, level_qc)
            discs = np.asarray(seg.info.get("discs_kji") or np.zeros((0, 3)), float)
            s["disc_score"] = score_discs(ref, canonical.index_to_lps(discs) if len(discs) else discs)
        s.update(
            seconds=round(dt, 1),
            qc=seg.qc,
            found=[NAMES.get(v) for v in seg.levels],
            anchor=seg.info.get("label_anchor"),
            naming=seg.info.get("naming"),
        )
        if base is None:
            base = (seg, rois)
        else:
            same = [NAMES.get(v) for v in seg.levels] == [NAMES.get(v) for v in base[0].levels]
            d = roi_dice(base[1].labelmap, rois.labelmap)
            s.update(
                names_same=same, renamed=renamed(base[0].bodies, seg.bodies), roi_dice_min=min(d.values(), default=1.0)
            )
        out[name] = s
    return out


def renamed(base: np.ndarray, other: np.ndarray) -> list[str]:
    """Vertebrae of the base run that carry another name in ``other``: the name most of a base body's
    voxels get there, when it is not its own. A segment that only one run finds (a sliver split off
    at the scan's edge) changes the list of names but renames no vertebra, so the two are counted
    apart; two bodies merged, or a whole split moved, rename at least one."""
    from OsteoAIBaseLib.levels import NAMES

    both = (base > 0) & (other > 0)
    n = int(max(base.max(), other.max())) + 1
    # voxel counts of every (base name, other name) pair, in one pass
    joint = np.bincount(base[both].astype(np.int64) * n + other[both], minlength=n * n).reshape(n, n)
    out = []
    for b in np.nonzero(joint.sum(1))[0]:
        o = int(np.argmax(joint[b]))
        if o != int(b):
            out.append(f"{NAMES.get(int(b), b)}->{NAMES.get(o, o)}")
    return out


def _pct(a, b):
    return f"{a}/{b}" + (f" ({100 * a / b:.0f}%)" if b else "")


def _mean_pct(xs) -> float:
    return float(np.mean(xs)) * 100 if xs else float("nan")


def print_case(r: dict) -> None:
    b = r.get("base", {})
    if "error" in b:
        print(f"{r['case']:38s} {r['segmenter']:10s} ERROR {b['error']}")
        return
    named = [x["inside_named"] for x in b["rois"] if x["inside_named"] is not None]
    blind = [x["inside_body"] for x in b["rois"] if x["inside_body"] is not None]
    dice = [x["dice"] for x in b["levels"] if "dice" in x and x["full"]]
    inv = []
    for v in ("scaled", "noise"):
        if v in r:
            s = r[v]
            inv.append(
                f"{v}: ERROR"
                if "error" in s
                else f"{v}: names {_names_change(s)}, ROI Dice min {s['roi_dice_min']:.2f}"
            )
    flag = "uncertain" if b["label_uncertain"] else "certain"
    if b["missing_uncertain_flag"]:
        flag += " MISSING-FLAG"
    print(
        f"{r['case']:38s} {r['segmenter']:10s} id {_pct(b['n_identified'], b['n_full']):14s} "
        f"ROI in named {_mean_pct(named):5.1f}% in body {_mean_pct(blind):5.1f}% "
        f"(min {min(blind, default=float('nan')) * 100:.0f}%) "
        f"wrong-unflagged {b['wrong_unflagged']} fracture {b['fracture_flags']} {flag}"
        f"{f' Dice {np.mean(dice):.2f}' if dice else ''} {b['seconds']}s"
    )
    print(f"    found {','.join(x or '?' for x in b['found'])}; anchor {b.get('anchor')}; " + "; ".join(inv))
    nm = b.get("naming") or {}
    if nm.get("evidence"):
        ev = " ".join(
            f"{e['rib_sides']}{'' if e['assessable'] else '?'}/{e['volume_cm3'] or '-'}" for e in nm["evidence"]
        )
        ru = nm.get("runner_up") or ["?"]
        print(f"    naming margin {nm.get('margin_nats')} runner-up {ru[0]}-{ru[-1]}; ribs/volume per segment: {ev}")
    ds = b.get("disc_score")
    if ds:
        miss = " ".join(f"{n}({d:+.0f})" for n, d in ds["missed"])
        print(f"    discs found {len(ds['found'])}/{ds['discs']}; missed {miss or '-'}; spurious {len(ds['spurious'])}")
    wrong = [f"{x['level']}->{x['predicted']}" for x in b["levels"] if x["full"] and not x["identified"]]
    if wrong:
        print(f"    not identified: {' '.join(wrong)}")
    bad = [
        f"{x['roi']}:{x['inside_body'] * 100:.0f}%"
        for x in b["rois"]
        if x["inside_body"] is not None and x["inside_body"] < 0.99
    ]
    if bad:
        print(f"    ROIs < 99% in one body: {' '.join(bad)}")
    if b["qc"]:
        print(f"    qc: {' | '.join(b['qc'])[:400]}")


def _names_change(s: dict) -> str:
    if s["names_same"]:
        return "same"
    if s["renamed"]:
        return f"CHANGED (renamed {' '.join(s['renamed'])})"
    return "CHANGED (segments differ, no vertebra renamed)"


def totals(results: list[dict]) -> dict:
    ok = [r["base"] for r in results if "error" not in r.get("base", {"error": 1})]
    vox_in = vox_all = 0
    for b in ok:
        for x in b["rois"]:
            if x["inside_body"] is not None:
                vox_in += x["inside_body"] * x["voxels"]
                vox_all += x["voxels"]
    inv = [r[v] for r in results for v in ("scaled", "noise") if v in r]
    return {
        "scans": len(results),
        "errors": len(results) - len(ok),
        "identified": sum(b["n_identified"] for b in ok),
        "full": sum(b["n_full"] for b in ok),
        "worst_scan_id": min((b["n_identified"] / b["n_full"] for b in ok if b["n_full"]), default=float("nan")),
        "roi_in_body": vox_in / vox_all if vox_all else float("nan"),
        "wrong_unflagged": sum(b["wrong_unflagged"] for b in ok),
        "missing_uncertain_flag": sum(b["missing_uncertain_flag"] for b in ok),
        "fracture_flags": sum(b["fracture_flags"] for b in ok),
        "ref_levels": sum(len(b["levels"]) for b in ok),
        "invariance_runs": len(inv),
        "names_changed": sum(1 for s in inv if "error" in s or not s["names_same"]),
        "renamed_runs": sum(1 for s in inv if "error" in s or s["renamed"]),
        "roi_dice_min": min((s["roi_dice_min"] for s in inv if "error" not in s), default=float("nan")),
        # the worst error must not appear under a changed HU scale or noise either
        "wrong_unflagged_variants": sum(s.get("wrong_unflagged", 0) for s in inv if "error" not in s),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--segmenters", default="classical,model")
    ap.add_argument("--scans", default="", help="comma-separated substrings of scan names (default: all)")
    ap.add_argument("--variants", default="base,scaled,noise")
    ap.add_argument("--noise-seed", type=int, default=0, help="seed of the noise variant's draw")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        print(f"no real data at {data}: nothing to score")
        return 0
    cases = [
        c
        for c in [*LANDMARKED, *LABELLED]
        if (data / c.split(":")[0]).is_dir() and (not args.scans or any(s in c for s in args.scans.split(",")))
    ]
    variants = args.variants.split(",")
    if variants[0] != "base":
        variants = ["base", *[v for v in variants if v != "base"]]
    all_results = []
    for segmenter in args.segmenters.split(","):
        res = []
        print(f"\n=== segmenter {segmenter} ===")
        for case in cases:
            r = run_case(case, data, segmenter, variants, args.noise_seed)
            print_case(r)
            sys.stdout.flush()
            res.append(r)
        t = totals(res)
        print(
            f"TOTAL {segmenter}: identified {_pct(t['identified'], t['full'])}, worst scan "
            f"{t['worst_scan_id'] * 100:.0f}%; ROI voxels inside one body {t['roi_in_body'] * 100:.1f}%; "
            f"wrong names without label_uncertain {t['wrong_unflagged']}; low-confidence scans without the flag "
            f"{t['missing_uncertain_flag']}; fracture flags {t['fracture_flags']}/{t['ref_levels']} reference "
            f"levels; "
            f"invariance: names changed in {t['names_changed']}/{t['invariance_runs']} runs "
            f"(a vertebra renamed in {t['renamed_runs']}), "
            f"ROI Dice min {t['roi_dice_min']:.2f}, wrong names without label_uncertain "
            f"{t['wrong_unflagged_variants']}; {t['errors']} scans failed"
        )
        all_results.append({"segmenter": segmenter, "cases": res, "total": t})
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
