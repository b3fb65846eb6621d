"""Pick and render the few images a radiologist needs to trust the number.

Default four: a curved mid-sagittal reformat of the spine with labels and ROIs, axial slices through the
two diagnostic vertebrae, and an axial slice through the lowest-density level (or another clean level
when that is already shown). Each image carries its position so the Slicer panel can jump to it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from OsteoAIBaseLib.volume import Volume
from scipy import ndimage

from .results import LevelResult
from .terminology import level_color

WINDOW_BONE = (1500.0, 400.0)  # width, level: cortical vs trabecular contrast
WINDOW_SOFT = (400.0, 40.0)


@dataclass
class KeyImage:
    name: str  # file stem, e.g. "2_axial_L1"
    title: str
    plane: str  # "sagittal" | "axial"
    level: str | None
    index_kji: tuple[int, int, int]  # a voxel of the canonical grid the image passes through
    center_lps: tuple[float, float, float]
    png: bytes = field(repr=False, default=b"")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "file": f"key_images/{self.name}.png",
            "title": self.title,
            "plane": self.plane,
            "level": self.level,
            "center_lps": [round(float(x), 2) for x in self.center_lps],
        }


def _window(img: np.ndarray, wl: tuple[float, float]) -> np.ndarray:
    w, level = wl
    return np.clip((img - (level - w / 2)) / w, 0, 1)


def _spine_curve(vertebrae: np.ndarray) -> np.ndarray:
    """i (column) of the spine's centre for every slice k, interpolated where no vertebra is seen."""
    nk = vertebrae.shape[0]
    ks, cols = [], []
    for k in range(nk):
        ii = np.nonzero(vertebrae[k].any(axis=0))[0]
        if ii.size:
            ks.append(k)
            cols.append(0.5 * (ii.min() + ii.max()))
    if not ks:
        return np.full(nk, vertebrae.shape[2] // 2)
    curve = np.interp(np.arange(nk), ks, cols)
    return np.round(ndimage.uniform_filter1d(curve, size=max(3, nk // 20))).astype(int)


def _render(gray, labels, rois, spacing_xy, title, legend, wl) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    h, w = gray.shape
    sx, sy = spacing_xy
    fig_w = 6.0 + (1.6 if legend else 0.0)
    fig_h = float(np.clip(fig_w * (h * sy) / max(w * sx, 1e-6), 3.0, 9.0))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    ax.imshow(_window(gray, wl), cmap="gray", origin="lower", aspect=sy / sx, interpolation="nearest")
    rgba = np.zeros((h, w, 4))
    for lab in np.unique(labels):
        if lab == 0:
            continue
        edge = labels == lab
        edge = edge & ~ndimage.binary_erosion(edge)
        rgba[edge] = (*level_color(lab), 0.9)
    for lab in np.unique(rois):
        if lab == 0:
            continue
        rgba[rois == lab] = (1.0, 0.85, 0.0, 0.45)
    ax.imshow(rgba, origin="lower", aspect=sy / sx, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    handles = [Patch(facecolor=(1.0, 0.85, 0.0, 0.6), label="trabecular ROI")] + [
        Patch(edgecolor=level_color(lab), facecolor="none", label=text) for lab, text in legend
    ]
    # Outside the image: on a whole-spine reformat a legend inside would hide the vertebrae.
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def sagittal_image(vol: Volume, vertebrae: np.ndarray, rois: np.ndarray, levels: list[LevelResult]) -> KeyImage:
    curve = _spine_curve(vertebrae)
    k_idx = np.arange(vol.shape[0])
    gray = vol.array[k_idx, :, curve].astype(np.float32)  # [k, j]: rows = slices
    lab = vertebrae[k_idx, :, curve]
    roi = rois[k_idx, :, curve]
    # j = 0 is anterior, so columns already show anterior on the left as a sagittal view is read.
    legend = [(lv.label, _legend_text(lv)) for lv in levels]
    kc = vol.shape[0] // 2
    center = (kc, vol.shape[1] // 2, int(curve[kc]))
    title = "Mid-sagittal (curved) reformat"
    png = _render(gray, lab, roi, (vol.spacing[1], vol.spacing[2]), title, legend, WINDOW_BONE)
    return KeyImage(
        "1_sagittal",
        "Mid-sagittal reformat: levels and trabecular ROIs",
        "sagittal",
        None,
        center,
        tuple(vol.index_to_lps(center)),
        png,
    )


def axial_image(
    vol: Volume,
    vertebrae: np.ndarray,
    rois: np.ndarray,
    lv: LevelResult,
    n: int,
    why: str,
    box: tuple[slice, ...] | None = None,
) -> KeyImage:
    """Axial slice through the middle of the level's ROI (``box``: its bounding box, if known)."""
    if box is None:
        ks = np.nonzero((rois == lv.label).any(axis=(1, 2)))[0]
        if ks.size == 0:
            ks = np.nonzero((vertebrae == lv.label).any(axis=(1, 2)))[0]
        k = int(np.median(ks))
    else:
        k = (box[0].start + box[0].stop - 1) // 2
    jj, ii = np.nonzero(vertebrae[k] == lv.label)
    if jj.size:  # crop around the vertebra so the ROI is readable
        pad = int(40 / vol.spacing[0])
        j0, j1 = max(0, jj.min() - pad), min(vol.shape[1], jj.max() + pad)
        i0, i1 = max(0, ii.min() - pad), min(vol.shape[2], ii.max() + pad)
    else:
        j0, j1, i0, i1 = 0, vol.shape[1], 0, vol.shape[2]
    # Radiological convention: patient's right on the image left, anterior up -> rows = -j.
    sl = (k, slice(j0, j1), slice(i0, i1))
    gray = vol.array[sl].astype(np.float32)[::-1]
    lab = vertebrae[sl][::-1]
    roi = rois[sl][::-1]
    title = f"{lv.level} axial ({why}): {_legend_text(lv)}"
    center = (k, int((j0 + j1) // 2), int((i0 + i1) // 2))
    png = _render(gray, lab, roi, (vol.spacing[0], vol.spacing[1]), title, [(lv.label, lv.level)], WINDOW_BONE)
    return KeyImage(f"{n}_axial_{lv.level}", title, "axial", lv.level, center, tuple(vol.index_to_lps(center)), png)


def _legend_text(lv: LevelResult) -> str:
    if lv.vbmd_mg_cm3 is None:
        return f"{lv.level}: no ROI"
    flag = " (QC)" if lv.qc else ""
    return f"{lv.level}: {lv.vbmd_mg_cm3:.0f} mg/cm3{flag}"


def select_and_render(
    vol: Volume, vertebrae: np.ndarray, rois: np.ndarray, levels: list[LevelResult], n_images: int = 4
) -> list[KeyImage]:
    """Key images on the canonical grid, most informative first."""
    if n_images <= 0 or not levels:
        return []
    images = [sagittal_image(vol, vertebrae, rois, levels)]
    measured = [lv for lv in levels if lv.vbmd_mg_cm3 is not None and lv.roi_volume_mm3 > 0]
    picks: list[tuple[LevelResult, str]] = [(lv, "diagnostic level") for lv in measured if lv.used_for_diagnosis]
    if measured:
        lowest = min(measured, key=lambda lv: lv.vbmd_mg_cm3)
        if all(lowest is not p for p, _ in picks):
            picks.append((lowest, "lowest density"))
    for lv in sorted(measured, key=lambda lv: (bool(lv.qc), lv.label)):
        if all(lv is not p for p, _ in picks):
            picks.append((lv, "flagged level" if lv.qc else "additional level"))
    from .label_boxes import boxes_by_label

    boxes = boxes_by_label(rois)
    for n, (lv, why) in enumerate(picks[: n_images - 1], start=2):
        images.append(axial_image(vol, vertebrae, rois, lv, n, why, boxes.get(lv.label)))
    return images
