"""The batch summary: what was screened, what came out (ACR categories, QC outcomes), what it cost (time per
study and per stage), and two plots (vBMD by level; by age and sex where known)."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from OsteoAIBaseLib.atomic import write_json, write_text, write_with

from ..results import ACR_NORMAL_ABOVE, ACR_OSTEOPOROSIS_BELOW

CATEGORIES = ("normal", "osteopenia", "osteoporosis", "not possible")


def build_summary(rows: list[dict], outcomes: dict[str, dict], n_studies: int, wall_s: float, workers: str) -> dict:
    studies = {}
    for r in rows:
        studies.setdefault(r["study_id"], r)
    cat = Counter(r["category"] or "not possible" for r in studies.values())
    scan_qc = Counter(code for r in studies.values() for code in _codes(r["scan_qc"]))
    level_qc = Counter(code for r in rows for code in _codes(r.get("level_qc")))
    status = Counter(o["status"] for o in outcomes.values())
    ran = [o for o in outcomes.values() if o["status"] == "done"]
    secs = sorted(o["seconds"] for o in ran)
    stages: dict[str, list[float]] = {}
    for o in ran:
        for k, v in (o.get("timing_s") or {}).items():
            stages.setdefault(k, []).append(v)
    peaks = [o["peak_mb"] for o in ran if o.get("peak_mb")]
    cpu = [o["cpu_s"] for o in ran if o.get("cpu_s") is not None]
    n_done = len(studies)
    return {
        "studies": n_studies,
        "with_results": n_done,
        "this_run": {
            "screened": status.get("done", 0),
            "failed": status.get("failed", 0),
            "skipped_complete": status.get("skipped", 0),
            "wall_s": round(wall_s, 1),
            "studies_per_hour": round(3600 * len(ran) / wall_s, 1) if wall_s > 0 and ran else None,
            "workers": workers,
        },
        "categories": {c: cat.get(c, 0) for c in CATEGORIES},
        "clean_studies": sum(1 for r in studies.values() if not r["scan_qc"]),
        "scan_qc": dict(scan_qc.most_common()),
        "levels": len([r for r in rows if r.get("level")]),
        "levels_used_for_diagnosis": sum(1 for r in rows if r.get("used_for_diagnosis")),
        "level_qc": dict(level_qc.most_common()),
        "seconds_per_study": (
            {
                "mean": round(statistics.fmean(secs), 2),
                "median": round(statistics.median(secs), 2),
                "p90": round(secs[int(0.9 * (len(secs) - 1))], 2),
                "max": round(secs[-1], 2),
            }
            if secs
            else None
        ),
        "cpu_s_per_study": round(statistics.fmean(cpu), 2) if cpu else None,
        "stage_mean_s": {k: round(statistics.fmean(v), 3) for k, v in stages.items()},
        "peak_mb": {"median": round(statistics.median(peaks)), "max": round(max(peaks))} if peaks else None,
    }


def _codes(text) -> list[str]:
    return [c.strip() for c in (text or "").split("|") if c.strip()]


def summary_text(s: dict) -> str:
    run = s["this_run"]
    lines = [
        f"OsteoAI batch: {s['with_results']} of {s['studies']} studies have results "
        f"({run['screened']} screened now, {run['skipped_complete']} already complete, {run['failed']} failed; "
        "see failures.csv)",
        f"This run: {run['wall_s']:.0f} s on {run['workers']}"
        + (f", {run['studies_per_hour']:.0f} studies/hour" if run["studies_per_hour"] else ""),
    ]
    if s["seconds_per_study"]:
        t = s["seconds_per_study"]
        lines.append(
            f"Time per study: mean {t['mean']:.1f} s, median {t['median']:.1f} s, p90 {t['p90']:.1f} s, "
            f"max {t['max']:.1f} s (CPU {s['cpu_s_per_study']:.1f} s); stages (mean s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in s["stage_mean_s"].items())
        )
    if s["peak_mb"]:
        lines.append(f"Peak memory per study: median {s['peak_mb']['median']} MB, max {s['peak_mb']['max']} MB")
    lines.append("ACR category (diagnostic levels): " + ", ".join(f"{k} {v}" for k, v in s["categories"].items()))
    lines.append(
        f"Scan QC: {s['clean_studies']} studies without a flag; "
        + (", ".join(f"{k} {v}" for k, v in s["scan_qc"].items()) or "no flags")
    )
    lines.append(
        f"Levels: {s['levels']} measured, {s['levels_used_for_diagnosis']} used for diagnosis; flags: "
        + (", ".join(f"{k} {v}" for k, v in s["level_qc"].items()) or "none")
    )
    return "\n".join(lines)


def write_summary(out_root, rows: list[dict], s: dict) -> list[Path]:
    out = Path(out_root)
    paths = [write_json(out / "summary.json", s), write_text(out / "summary.txt", summary_text(s) + "\n")]
    levels = [r for r in rows if r.get("vbmd_mg_cm3") is not None]
    if levels:
        paths.append(write_with(out / "vbmd_by_level.png", lambda p: _by_level(levels, p)))
        if any(r.get("age") is not None for r in levels):
            paths.append(write_with(out / "vbmd_by_age_sex.png", lambda p: _by_age_sex(levels, p)))
    return paths


def _axes(title, xlabel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for y in (ACR_OSTEOPOROSIS_BELOW, ACR_NORMAL_ABOVE):
        ax.axhline(y, ls="--", c="grey", lw=0.8)
    ax.set(title=title, xlabel=xlabel, ylabel="vBMD (mg/cm³ HA)")
    return plt, fig, ax


def _by_level(rows, path) -> None:
    by: dict[int, list[float]] = {}
    names = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r["vbmd_mg_cm3"])
        names[r["label"]] = r["level"]
    order = sorted(by)
    plt, fig, ax = _axes(f"vBMD by level ({len({r['study_id'] for r in rows})} studies)", "level")
    ax.boxplot([by[k] for k in order], tick_labels=[names[k] for k in order], showfliers=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _by_age_sex(rows, path) -> None:
    """The diagnostic vBMD per study (levels used for diagnosis averaged) against age, one colour per sex."""
    studies = {}
    for r in rows:
        if r.get("age") is not None and r.get("study_vbmd_mg_cm3") is not None:
            studies[r["study_id"]] = r
    plt, fig, ax = _axes(f"Diagnostic vBMD by age and sex ({len(studies)} studies)", "age (years)")
    for sex, colour in (("F", "tab:red"), ("M", "tab:blue"), (None, "tab:grey")):
        pts = [
            (r["age"], r["study_vbmd_mg_cm3"])
            for r in studies.values()
            if (r.get("sex") if r.get("sex") in ("F", "M") else None) == sex
        ]
        if pts:
            ax.scatter(*zip(*pts, strict=True), c=colour, s=14, label={"F": "female", "M": "male"}.get(sex, "unknown"))
    if studies:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def load_summary(out_root) -> dict:
    return json.loads((Path(out_root) / "summary.json").read_text())
