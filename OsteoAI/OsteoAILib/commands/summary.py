"""The one-screen summary printed after a run."""

from __future__ import annotations

from ..results import Results


def summary_table(res: Results, truth: dict | None = None) -> str:
    """Per-level table (+ the phantom's true vBMD when given) and the diagnosis."""
    truth_by_level = {t["level"]: t for t in (truth or {}).get("levels", [])}
    head = f"{'level':<6}{'ROI cm3':>8}{'mean HU':>9}{'vBMD':>8}{'95% CI':>15}"
    if truth:
        head += f"{'truth':>8}{'error':>8}"
    head += "  diag  QC"
    lines = [head, "-" * len(head)]
    for lv in res.levels:
        ci = f"{lv.vbmd_ci95[0]:.0f}-{lv.vbmd_ci95[1]:.0f}" if lv.vbmd_ci95 else "-"
        row = f"{lv.level:<6}{lv.roi_volume_mm3 / 1000:>8.2f}{_f(lv.roi_mean_hu, 9)}{_f(lv.vbmd_mg_cm3, 8)}{ci:>15}"
        if truth:
            t = truth_by_level.get(lv.level, {}).get("vbmd_mg_cm3")
            err = lv.vbmd_mg_cm3 - t if (t is not None and lv.vbmd_mg_cm3 is not None) else None
            row += f"{_f(t, 8)}{_f(err, 8, signed=True)}"
        row += f"  {'yes ' if lv.used_for_diagnosis else '    '}  {'; '.join(q.split(':')[0] for q in lv.qc)}"
        lines.append(row)
    d, c = res.diagnosis, res.calibration
    lines.append("")
    if d.category:
        ci = f" (95% CI {d.vbmd_ci95[0]:.0f}-{d.vbmd_ci95[1]:.0f})" if d.vbmd_ci95 else ""
        lines.append(f"Diagnosis: {d.category.upper()}  vBMD {d.vbmd_mg_cm3:.1f} mg/cm3{ci} from {', '.join(d.levels)}")
    else:
        lines.append("Diagnosis: not possible (no clean diagnostic level)")
    lines.append(f"  criteria: {d.criteria}")
    if d.pickhardt_l1_hu is not None:
        lines.append(f"  Pickhardt L1 triage: {d.pickhardt_l1_hu:.0f} HU -> {d.pickhardt_triage}")
    methods: dict[str, int] = {}
    for lv in res.levels:
        if lv.vbmd_method:
            methods[lv.vbmd_method] = methods.get(lv.vbmd_method, 0) + 1
    if methods:
        lines.append("vBMD estimator: " + "; ".join(f"{m} on {n} level(s)" for m, n in methods.items()))
    resid = f", residual {c.residual_hu:.1f} HU" if c.residual_hu is not None else ""
    lines.append(
        f"Calibration: {c.method} at {c.kvp:g} kVp ({c.kvp_source}); HU_true = {c.slope:.3f} x HU "
        f"{c.intercept:+.1f}{resid}"
    )
    if res.qc:
        lines.append("Scan QC: " + "; ".join(res.qc))
    if res.timing_s:
        total = sum(res.timing_s.values())
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in res.timing_s.items())
        lines.append(f"Timing: {stages} (total {total:.1f}s)")
    return "\n".join(lines)


def _f(x, w, signed=False):
    if x is None:
        return f"{'-':>{w}}"
    return f"{x:>+{w}.1f}" if signed else f"{x:>{w}.1f}"
