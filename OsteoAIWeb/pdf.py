"""A one- or two-page PDF summary of an upload's result (matplotlib's PDF backend, no extra package)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from OsteoAIBaseLib.atomic import write_with
from OsteoAILib.results import Results

from .explain import explain
from .plots import draw_bmd


def write_summary_pdf(results: Results, result_dir: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    text = explain(results)

    def write(tmp: Path) -> None:
        with PdfPages(tmp, metadata={"Title": "OsteoAI screening summary", "Creator": "OsteoAI"}) as pdf:
            fig = Figure(figsize=(8.27, 11.69))
            fig.text(0.07, 0.95, "OsteoAI bone density screening: summary", fontsize=15, weight="bold")
            y = 0.91
            for para in [text["headline"], *text["detail"]]:
                for line in textwrap.wrap(para, 95):
                    fig.text(0.07, y, line, fontsize=10)
                    y -= 0.018
                y -= 0.008
            ax = fig.add_axes((0.1, y - 0.3, 0.75, 0.27))
            draw_bmd(ax, results)
            y -= 0.36
            for title, lines in (("Scan quality notes", text["notes"] or ["none"]), ("Limits", text["limits"])):
                fig.text(0.07, y, title, fontsize=11, weight="bold")
                y -= 0.02
                for para in lines:
                    for line in textwrap.wrap(para, 100):
                        fig.text(0.07, y, line, fontsize=8.5)
                        y -= 0.015
                    y -= 0.005
            pdf.savefig(fig)
            keys = [k for k in results.key_images if (result_dir / k.get("file", "")).is_file()]
            if keys:
                fig = Figure(figsize=(8.27, 11.69))
                fig.text(0.07, 0.95, "Key images", fontsize=13, weight="bold")
                for i, k in enumerate(keys[:4]):
                    ax = fig.add_axes((0.06 + 0.46 * (i % 2), 0.5 - 0.44 * (i // 2), 0.42, 0.4))
                    ax.imshow(imread(result_dir / k["file"]))
                    ax.set_title(textwrap.shorten(k.get("title", ""), 60), fontsize=8)
                    ax.axis("off")
                pdf.savefig(fig)

    return write_with(out, write)
