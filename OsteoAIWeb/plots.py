"""Figures of a result as PNG bytes (matplotlib, no display): vBMD per level with the ACR bands, and the
calibration fit. Drawn from the result alone, so the upload page and the PDF need no scene."""

from __future__ import annotations

import io

from OsteoAILib.results import ACR_NORMAL_ABOVE, ACR_OSTEOPOROSIS_BELOW, Results

BANDS = (("osteoporosis", 0, ACR_OSTEOPOROSIS_BELOW, "#f4c7c3"),
         ("osteopenia", ACR_OSTEOPOROSIS_BELOW, ACR_NORMAL_ABOVE, "#fce8b2"),
         ("normal", ACR_NORMAL_ABOVE, 250, "#b7e1cd"))  # fmt: skip


def _figure(w=6.0, h=3.4, left=0.11, right=0.84):
    """A figure with fixed margins (room for the band names on the right): a "tight" box would draw it twice,
    half the time of a study view's plots."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    fig.subplots_adjust(left=left, right=right, top=0.9, bottom=0.13)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def draw_bmd(ax, results: Results) -> None:
    levels = [lv for lv in results.levels if lv.vbmd_mg_cm3 is not None]
    top = max([250.0] + [lv.vbmd_ci95[1] + 20 for lv in levels if lv.vbmd_ci95])
    for name, lo, hi, colour in BANDS:
        ax.axhspan(lo, hi if name != "normal" else top, color=colour, zorder=0)
        ax.text(1.01, (lo + min(hi, top)) / 2, name, transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    xs = list(range(len(levels)))
    for x, lv in zip(xs, levels, strict=True):
        colour = "#1a73e8" if lv.used_for_diagnosis else "#777777"
        if lv.vbmd_ci95:
            ax.plot([x, x], lv.vbmd_ci95, color=colour, lw=2)
        ax.plot(x, lv.vbmd_mg_cm3, "o", color=colour, ms=7)
    ax.set_xticks(xs, [lv.level for lv in levels])
    ax.set_xlim(-0.6, max(len(levels), 1) - 0.4)
    ax.set_ylim(0, top)
    ax.set_ylabel("vBMD (mg/cm³)")
    ax.set_title("vBMD per level, 95% interval (blue: used for the diagnosis)", fontsize=9)


def bmd_png(results: Results) -> bytes:
    fig = _figure()
    draw_bmd(fig.subplots(), results)
    return _png(fig)


def draw_calibration(ax, results: Results) -> None:
    cal = results.calibration
    refs = [(n, r) for n, r in (cal.references or {}).items() if r.get("measured_hu") is not None]
    phantom = any("expected_mg_cm3" in r for _, r in refs)
    key = "expected_mg_cm3" if phantom else "expected_hu"
    xs = [r["measured_hu"] for _, r in refs]
    for n, r in refs:
        if r.get(key) is not None:
            ax.plot(r["measured_hu"], r[key], "o", color="#1a73e8" if r.get("used", True) else "#999999")
            ax.annotate(n, (r["measured_hu"], r[key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if xs and not phantom:
        lo, hi = min(xs) - 50, max(xs) + 50
        ax.plot([lo, hi], [cal.slope * lo + cal.intercept, cal.slope * hi + cal.intercept], color="#d9480f", lw=1)
    ax.set_xlabel("measured HU")
    ax.set_ylabel("expected mg/cm³" if phantom else "expected HU")
    ax.set_title(f"Calibration ({cal.method}): HU_true = {cal.slope:.3f} × HU + {cal.intercept:.1f}", fontsize=9)


def calibration_png(results: Results) -> bytes:
    fig = _figure(5.0, 3.4, left=0.19, right=0.9)
    draw_calibration(fig.subplots(), results)
    return _png(fig)
