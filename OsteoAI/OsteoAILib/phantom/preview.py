"""PNG previews of a phantom (axial and sagittal, soft-tissue and bone windows) for docs and teaching."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WINDOWS = {"soft tissue W400/L40": (40.0, 400.0), "bone W1800/L400": (400.0, 1800.0)}


def save_previews(ph, out_dir, axial_level: str = "L1") -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vol = ph.volume
    arr = vol.array
    si, sj, sk = vol.spacing
    lev = {e["level"]: e for e in ph.truth["levels"]}
    k = int(round(lev[axial_level]["centre_kji"][0])) if axial_level in lev else arr.shape[0] // 2
    i = int(round(np.mean([e["centre_kji"][2] for e in ph.truth["levels"]])))
    views = {
        # canonical rows run anterior -> posterior and columns right -> left: radiological as is
        "axial": (arr[k], [0, arr.shape[2] * si, arr.shape[1] * sj, 0], f"axial slice k={k} ({axial_level})"),
        "sagittal": (arr[::-1, :, i], [0, arr.shape[1] * sj, arr.shape[0] * sk, 0], f"sagittal i={i} (midline)"),
    }
    files = {}
    for name, (img, extent, title) in views.items():
        aspect = abs(extent[3] - extent[2]) / abs(extent[1] - extent[0])
        fig, axes = plt.subplots(1, 2, figsize=(10, 5.0 * aspect + 0.6), dpi=80)
        for ax, (wname, (level, width)) in zip(axes, WINDOWS.items(), strict=True):
            ax.imshow(
                img,
                cmap="gray",
                vmin=level - width / 2,
                vmax=level + width / 2,
                extent=extent,
                interpolation="nearest",
                aspect="equal",
            )
            ax.set_title(f"{wname}", fontsize=10)
            ax.set_axis_off()
        fig.suptitle(f"OsteoAI phantom: {title}", fontsize=11)
        fig.tight_layout()
        path = out_dir / f"phantom_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        files[name] = path
    return files
