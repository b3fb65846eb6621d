"""Regenerate the extension's screenshots (docs/images/screenshot_*.png) headless, from a scene the pipeline wrote.

    .venv/bin/python docs/make_screenshots.py [--out docs/images] [--matrix 256]

1. builds the digital phantom (seed 7, T11-L3) and screens it with ``osteoai run CT --out DIR --scene``;
2. reads DIR/scene.mrml back with slicer-core (no Slicer GUI);
3. draws what Slicer's views show from that scene's nodes, with matplotlib:
   - ``screenshot_slice_views.png``: axial, sagittal and coronal slices of the CT node (bone window,
     WINDOW) with the "CT vertebrae" segmentation (fill, segment colours) and the "CT trabecular ROIs"
     segmentation (solid) overlaid, oriented as Slicer's Red/Yellow/Green views (radiological convention);
   - ``screenshot_bmd_table.png``: the "CT BMD" table node;
   - ``screenshot_bmd_plot.png``: the "CT BMD chart" plot chart node, its series and ACR bands.

Nothing in the pictures is drawn by hand: every value comes from the reloaded scene.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for sub in ("OsteoAI", "OsteoAISegment"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

WINDOW = (400.0, 1500.0)  # level, width (HU): Slicer's CT-bone preset
VIEW_COLOURS = {"axial": "#f34a33", "sagittal": "#edd54c", "coronal": "#6eb04b"}  # Red, Yellow, Green views
FILES = ("screenshot_slice_views.png", "screenshot_bmd_table.png", "screenshot_bmd_plot.png")


def screen_phantom(work: Path, matrix: int = 256) -> Path:
    """Write the phantom and run the CLI with --scene on it; returns DIR/scene.mrml."""
    from OsteoAILib.cli import main
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    spacing = 1.2 * 256 / matrix
    ph = make_phantom(PhantomParams(seed=7, matrix=matrix, spacing=(spacing, spacing, 1.5), levels="T11-L3"))
    write_phantom(ph, work / "phantom")
    ct = next((work / "phantom").glob("ct.nii*"))
    rc = main(["run", str(ct), "--out", str(work / "run"), "--scene", "--segmenter", "classical", "--quiet"])
    if rc:
        raise SystemExit(f"osteoai run failed ({rc})")
    return work / "run" / "scene.mrml"


def _one(scene, name: str):
    col = scene.GetNodesByName(name)
    if col.GetNumberOfItems() != 1:
        raise SystemExit(f"the scene has {col.GetNumberOfItems()} nodes named {name!r}")
    return col.GetItemAsObject(0)


def _segment_colours(seg_node) -> dict[int, tuple[float, float, float]]:
    """VerSe id -> the segment's colour, as the segmentation node stores it."""
    from OsteoAIBaseLib.levels import NAMES

    by_name = {v: k for k, v in NAMES.items()}
    s = seg_node.GetSegmentation()
    out = {}
    for n in range(s.GetNumberOfSegments()):
        seg = s.GetNthSegment(n)
        lab = by_name.get(seg.GetName().split()[0])
        if lab is not None:
            out[lab] = tuple(seg.GetColor())
    return out


def read_scene(path: Path) -> dict:
    from OsteoAIBaseLib.imageio import to_canonical
    from OsteoAIBaseLib.volume import Volume
    from OsteoAILib import mrml

    hs = mrml.load_scene(path)
    try:
        sc = hs.scene
        vol_node = _one(sc, "CT")
        vol = mrml.volume_from_node(vol_node)
        canon = to_canonical(vol)
        layers = {}
        for name in ("CT vertebrae", "CT trabecular ROIs"):
            node = _one(sc, name)
            lab = mrml.segmentation_to_labelmap(sc, node, vol_node)
            layers[name] = (
                to_canonical(Volume(lab, vol.spacing, vol.origin, vol.direction)).array,
                _segment_colours(node),
            )
        table = _one(sc, "CT BMD")
        rows = mrml.table_to_rows(table)
        units = {c: table.GetColumnUnitLabel(c) for c in rows[0]} if rows else {}
        chart = _one(sc, "CT BMD chart")
        series = []
        for n in range(chart.GetNumberOfPlotSeriesNodes()):
            s = chart.GetNthPlotSeriesNode(n)
            srows = mrml.table_to_rows(s.GetTableNode())
            series.append(
                {
                    "name": s.GetName(),
                    "x": [r[s.GetXColumnName()] for r in srows],
                    "y": [r[s.GetYColumnName()] for r in srows],
                    "labels": [r.get(s.GetLabelColumnName(), "") for r in srows] if s.GetLabelColumnName() else [],
                    "line": s.GetPlotType() == s.PlotTypeLine,
                    "dash": s.GetLineStyle() == s.LineStyleDash,
                    "colour": tuple(s.GetColor()),
                }
            )
        plot = {"title": chart.GetTitle(), "x": chart.GetXAxisTitle(), "y": chart.GetYAxisTitle(), "series": series}
        return {"ct": canon, "layers": layers, "rows": rows, "units": units, "plot": plot}
    finally:
        hs.close()


def _rgba(lab: np.ndarray, colours: dict, alpha: float) -> np.ndarray:
    img = np.zeros(lab.shape + (4,))
    for v, c in colours.items():
        m = lab == v
        img[m, :3] = c
        img[m, 3] = alpha
    return img


def _slices(ct, layers):
    """(title, ct 2-D, [label 2-D per layer], extent) as Slicer's Red, Yellow and Green views show them."""
    a = ct.array
    si, sj, sk = ct.spacing
    roi = layers["CT trabecular ROIs"][0]
    kk, jj, ii = np.nonzero(roi)
    k0, j0, i0 = (int(np.median(x)) for x in (kk, jj, ii)) if kk.size else (s // 2 for s in a.shape)
    # L1's ROI centre, when there is one, gives the axial slice
    from OsteoAIBaseLib.levels import NAMES

    l1 = next((lab for lab, n in NAMES.items() if n == "L1"), None)
    if l1 is not None and (roi == l1).any():
        k0 = int(np.median(np.nonzero(roi == l1)[0]))
    nk, nj, ni = a.shape
    return [
        # axial: patient right on the left (i -> patient left), anterior up (j -> posterior)
        ("axial", lambda x: x[k0], [0, ni * si, nj * sj, 0]),
        # sagittal: anterior on the left, superior up
        ("sagittal", lambda x: x[::-1, :, i0], [0, nj * sj, 0, nk * sk]),
        # coronal: patient right on the left, superior up
        ("coronal", lambda x: x[::-1, j0, :], [0, ni * si, 0, nk * sk]),
    ]


def draw_slice_views(data: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct, layers = data["ct"], data["layers"]
    level, width = WINDOW
    views = _slices(ct, layers)
    fig, axes = plt.subplots(
        1, 3, figsize=(13.5, 6.2), facecolor="black", gridspec_kw={"width_ratios": [1.0, 0.9, 1.0]}
    )
    for ax, (name, cut, extent) in zip(axes, views, strict=True):
        ax.imshow(
            cut(ct.array),
            cmap="gray",
            vmin=level - width / 2,
            vmax=level + width / 2,
            extent=extent,
            interpolation="bilinear",
        )
        vert, vcol = layers["CT vertebrae"]
        rois, rcol = layers["CT trabecular ROIs"]
        ax.imshow(_rgba(cut(vert), vcol, 0.35), extent=extent, interpolation="nearest")
        ax.imshow(
            _rgba(cut(rois), {k: (1.0, 0.85, 0.1) for k in rcol} or rcol, 0.9), extent=extent, interpolation="nearest"
        )
        if name != "axial":
            from OsteoAIBaseLib.levels import NAMES

            lab2d = cut(vert)
            for lab in np.unique(lab2d[lab2d > 0]):
                rr, cc = np.nonzero(lab2d == lab)
                h, w = lab2d.shape
                x = extent[0] + (cc.max() + 3) / w * (extent[1] - extent[0])
                y = extent[3] + (rr.mean() + 0.5) / h * (extent[2] - extent[3])
                ax.text(
                    x,
                    y,
                    NAMES.get(int(lab), str(lab)),
                    color="white",
                    fontsize=9,
                    va="center",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
                )
        ax.set_title(f"{name}", color="black", fontsize=11, loc="left", backgroundcolor=VIEW_COLOURS[name], pad=4)
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_color(VIEW_COLOURS[name])
            s.set_linewidth(2)
    fig.suptitle(
        "OsteoAI: CT vertebrae (fill) and trabecular ROIs (yellow) of the digital phantom", color="white", fontsize=12
    )
    fig.tight_layout()
    path = out / FILES[0]
    fig.savefig(path, dpi=110, facecolor=fig.get_facecolor())
    plt.close(fig)
    return path


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.1f}" if abs(v - round(v)) > 1e-9 else f"{v:.0f}"


def draw_table(data: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    cols = [c for c in rows[0] if c not in ("Index", "QC")]
    header = [f"{c}\n({data['units'][c]})" if data["units"].get(c) else c for c in cols]
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(min(2 + 1.15 * len(cols), 18), 1.3 + 0.42 * len(rows)))
    ax.axis("off")
    tab = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.scale(1, 1.6)
    for (r, _), cell in tab.get_celld().items():
        if r == 0:
            cell.set_facecolor("#dde6f2")
            cell.set_height(cell.get_height() * 1.5)
    ax.set_title("CT BMD (table node, as the OsteoAI module shows it)", fontsize=11)
    fig.tight_layout()
    path = out / FILES[1]
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_plot(data: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = data["plot"]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ticks = None
    for s in p["series"]:
        if s["line"]:
            ax.plot(s["x"], s["y"], "--" if s["dash"] else "-", color=s["colour"], label=s["name"])
        else:
            ax.plot(s["x"], s["y"], "o", color=s["colour"], markersize=8, label=s["name"])
            ticks = (s["x"], s["labels"]) if s["labels"] else ticks
    if ticks:
        ax.set_xticks(ticks[0], ticks[1])
    ax.set_title(p["title"])
    ax.set_xlabel(p["x"])
    ax.set_ylabel(p["y"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = out / FILES[2]
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_screenshots(out: Path, matrix: int = 256, work: Path | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="osteoai-shots-") as tmp:
        scene = screen_phantom(Path(work or tmp), matrix)
        data = read_scene(scene)
    return [draw_slice_views(data, out), draw_table(data, out), draw_plot(data, out)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "images")
    ap.add_argument("--matrix", type=int, default=256, help="phantom matrix (smaller is faster)")
    args = ap.parse_args(argv)
    for p in make_screenshots(args.out, args.matrix):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
