"""Real-data consistency of vBMD where no truth exists (../shared/data).

1. Kernel pair: the same chest CT reconstructed with a soft (B) and a lung (L) kernel
   (tcia-lungdx-chest-5mm): per-level vBMD of both estimators, AI and calibrated HU.
2. HU scale: HU' = 1.08 * HU - 20 applied to each real scan: how far the diagnostic vBMD moves.
3. AI vs calibrated HU on every real level the AI estimated: do the two agree within their intervals;
   where not, the size of the model's correction and what it corrected for.

Run: .venv/bin/python Testing/benchmarks/vbmd_consistency.py [--data ../shared/data] [--skip-scale]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data"
PAIR = ("tcia-lungdx-chest-5mm", "ct.nii.gz", "ct-lung-kernel.nii.gz")
SCALE = (1.08, -20.0)


def run(vol):
    from OsteoAILib.pipeline import PipelineOptions, run_pipeline

    return run_pipeline(vol, PipelineOptions()).results


def level_values(results) -> dict[str, dict]:
    """{level: {ai, hu, ai_ci, hu_ci, clean, reason}} for every level with a number."""
    from OsteoAILib.qc import EXCLUDING as excl
    from OsteoAILib.qc import code as qc_code

    out = {}
    for lv in results.levels:
        if lv.vbmd_mg_cm3 is None:
            continue
        ai = str(lv.vbmd_method).startswith("ai:")
        hu = lv.extra.get("vbmd_calibrated_hu", lv.vbmd_mg_cm3) if ai else lv.vbmd_mg_cm3
        hu_ci = lv.extra.get("vbmd_calibrated_hu_ci95") if ai else lv.vbmd_ci95
        out[lv.level] = {
            "ai": lv.vbmd_mg_cm3 if ai else None,
            "hu": float(hu),
            "ai_ci": lv.vbmd_ci95 if ai else None,
            "hu_ci": hu_ci,
            "clean": not any(qc_code(f) in excl for f in lv.qc),
            "reason": getattr(lv, "vbmd_reason", ""),
        }
    return out


def kernel_pair(data: Path, log=print) -> list[dict]:
    from OsteoAIBaseLib.imageio import read_volume

    folder = data / PAIR[0]
    a = level_values(run(read_volume(folder / PAIR[1])))
    b = level_values(run(read_volume(folder / PAIR[2])))
    rows = []
    log(f"kernel pair {PAIR[0]}: soft (B) vs lung (L) kernel, per level (levels with a number in both)")
    log(f"{'level':6}{'AI soft':>9}{'AI lung':>9}{'diff':>8}   {'HU soft':>9}{'HU lung':>9}{'diff':>8}  clean")
    for lv in a:
        if lv not in b:
            continue
        x, y = a[lv], b[lv]
        d_hu = 100 * (y["hu"] - x["hu"]) / x["hu"]
        d_ai = 100 * (y["ai"] - x["ai"]) / x["ai"] if x["ai"] is not None and y["ai"] is not None else None
        clean = x["clean"] and y["clean"]
        rows.append(
            {
                "level": lv,
                "ai": (x["ai"], y["ai"]),
                "hu": (x["hu"], y["hu"]),
                "d_ai": d_ai,
                "d_hu": d_hu,
                "clean": clean,
            }
        )
        ai_txt = f"{x['ai'] or float('nan'):9.1f}{y['ai'] or float('nan'):9.1f}" + (
            f"{d_ai:+7.1f}%" if d_ai is not None else "      - "
        )
        log(f"{lv:6}{ai_txt}   {x['hu']:9.1f}{y['hu']:9.1f}{d_hu:+7.1f}%  {'yes' if clean else 'no'}")
    for key, name in (("d_ai", "AI"), ("d_hu", "calibrated HU")):
        v = np.array([abs(r[key]) for r in rows if r["clean"] and r[key] is not None])
        if v.size:
            log(
                f"  {name}: clean levels in both {v.size}, |diff| median {np.median(v):.1f}%, max {v.max():.1f}%, "
                f"within 3%: {int(np.sum(v <= 3.0))} of {v.size}"
            )
    return rows


def hu_scale(data: Path, log=print) -> list[dict]:
    from OsteoAIBaseLib.imageio import read_volume

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from phantom_realism import real_scans

    a, b = SCALE
    log(f"HU scale: HU' = {a:g} * HU {b:+g}; diagnostic vBMD before / after")
    rows = []
    for name, path in real_scans(data):
        t0 = time.perf_counter()
        vol = read_volume(path)
        scaled = vol.with_array(np.clip(np.rint(a * vol.array.astype(np.float64) + b), -32768, 32767).astype(np.int16))
        r0, r1 = run(vol), run(scaled)
        v0, v1 = r0.diagnosis.vbmd_mg_cm3, r1.diagnosis.vbmd_mg_cm3
        if v0 is None or v1 is None:
            log(f"  {name:36} no diagnosis ({'before' if v0 is None else 'after'})")
            continue
        d = 100 * (v1 - v0) / v0
        rows.append(
            {"scan": name, "before": v0, "after": v1, "diff": d, "levels": (r0.diagnosis.levels, r1.diagnosis.levels)}
        )
        log(
            f"  {name:36} {v0:7.1f} -> {v1:7.1f}  {d:+5.1f}%  levels {'+'.join(r0.diagnosis.levels)} / "
            f"{'+'.join(r1.diagnosis.levels)}  [{time.perf_counter() - t0:.0f} s]"
        )
    if rows:
        v = np.array([abs(r["diff"]) for r in rows])
        n_ok = int(np.sum(v <= 2.0))
        log(f"  |change| median {np.median(v):.1f}%, max {v.max():.1f}%, within 2%: {n_ok} of {v.size}")
    return rows


def correction_reason(results) -> str:
    """What a large AI correction on this scan answers: iodine contrast, the patient's age, else unexplained."""
    from OsteoAILib.calibration import detect_contrast

    cal = results.calibration
    enhanced, msg = detect_contrast(cal.references or {}, cal.kvp)
    if enhanced:
        return f"iodine contrast, which the plain estimate reads as mineral: {msg.split(': ', 1)[-1][:90]}"
    return "no contrast; the model's learned corrections (marrow fat for age, partial volume, noise)"


def agreement(data: Path, log=print) -> list[dict]:
    from OsteoAIBaseLib.imageio import read_volume

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from phantom_realism import real_scans

    log("AI vs calibrated HU on real levels the AI estimated (agree: each inside the other's 95% interval)")
    rows = []
    for name, path in real_scans(data):
        results = run(read_volume(path))
        why = correction_reason(results)
        for lv, v in level_values(results).items():
            if v["ai"] is None:
                continue
            lo, hi = v["ai_ci"]
            hlo, hhi = v["hu_ci"]
            agree = lo <= v["hu"] <= hi or hlo <= v["ai"] <= hhi
            rows.append({"scan": name, "level": lv, "ai": v["ai"], "hu": v["hu"], "agree": agree, "clean": v["clean"]})
            if not agree:
                log(
                    f"  {name:36} {lv:4} AI {v['ai']:6.1f} [{lo:.1f}, {hi:.1f}] vs HU {v['hu']:6.1f} "
                    f"[{hlo:.1f}, {hhi:.1f}]: the model corrects by {v['ai'] - v['hu']:+.1f} mg/cm3 ({why})"
                )
    n_ok = sum(r["agree"] for r in rows)
    log(f"  agree on {n_ok} of {len(rows)} AI-estimated real levels")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--skip-scale", action="store_true", help="skip the HU-scale check (two runs per scan)")
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / PAIR[0] / PAIR[2]).is_file():
        print(f"no real data at {data}: nothing to check (skipped)")
        return 0
    from OsteoAILib.vbmd_model.infer import default_model

    print(f"model {default_model().tag}")
    kernel_pair(data)
    print()
    agreement(data)
    if not args.skip_scale:
        print()
        hu_scale(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
