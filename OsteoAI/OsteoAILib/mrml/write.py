"""A whole screening output as scene nodes, and the ``scene.mrml`` that ``osteoai run --scene`` writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .constants import ATTR
from .key_images import add_key_images
from .parameters import Settings, settings_from_options, write_parameter_node
from .scene import new_scene, save_scene
from .segmentations import add_roi_segmentation, add_vertebrae_segmentation
from .tables import add_results_table, add_results_text
from .volumes import add_volume_node


@dataclass
class ResultNodes:
    volume: object
    vertebrae: object | None
    rois: object | None
    roi_boxes: dict
    table: object | None
    summary: object | None
    plot: object | None
    text: object | None
    key_images: object | None
    parameters: object | None = None


def add_pipeline_output(scene, output, volume_node=None, name: str | None = None, settings: Settings | None = None,
                        surface: bool = False, png_dir=None) -> ResultNodes:  # fmt: skip
    """Every result of a screening as nodes; ``volume_node`` is the input when it is already loaded."""
    if volume_node is None:
        name = name or _volume_name(output)
        volume_node = add_volume_node(scene, output.volume, name)
    vert = add_vertebrae_segmentation(scene, output.vertebrae, volume_node, surface=surface)
    rois, boxes = add_roi_segmentation(scene, output.rois, volume_node)
    table, summary, plot = add_results_table(scene, output.results, ref_volume_node=volume_node)
    text = add_results_text(scene, output.results, f"{volume_node.GetName()} results", volume_node)
    keys = output.key_images or output.results.key_images
    kin = add_key_images(scene, keys, volume_node, png_dir=png_dir) if keys else None
    for node in (table, vert, rois, text, kin):
        if node is not None:
            node.SetNodeReferenceID(ATTR + "volume", volume_node.GetID())
    nodes = {"inputVolume": volume_node, "vertebraeSegmentation": vert, "roiSegmentation": rois,
             "resultsTable": table, "resultsText": text, "keyImages": kin}  # fmt: skip
    pnode = write_parameter_node(scene, settings or Settings(), nodes)
    return ResultNodes(volume_node, vert, rois, boxes, table, summary, plot, text, kin, pnode)


def _volume_name(output) -> str:
    """'CT', or the input file's name when the user kept identifiers: node and file names of a scene
    must not carry the input file name (often the patient's name) unasked."""
    ids = output.results.input.get("identifiers") or {}
    src = output.results.input.get("name") or ids.get("file_name") or ids.get("series_description")
    if not src:
        return "CT"
    stem = Path(str(src)).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or "CT"


def write_scene(output, out_dir: str | os.PathLike, options=None, name: str | None = None) -> Path:
    """``out_dir/scene.mrml`` with the input volume, both segmentations, tables, plot, ROI boxes,
    key images and the parameter node: what ``osteoai run --scene`` writes, openable in Slicer."""
    out_dir = Path(out_dir)
    hs = new_scene()
    try:
        options = options if options is not None else getattr(output, "options", None)
        settings = settings_from_options(options) if options is not None else Settings()
        png_dir = _write_key_pngs(output, out_dir)
        add_pipeline_output(hs.scene, output, name=name, settings=settings, surface=False, png_dir=png_dir)
        return save_scene(hs.scene, out_dir / "scene.mrml")
    finally:
        hs.close()


def _write_key_pngs(output, out_dir: Path) -> str | None:
    from OsteoAIBaseLib.atomic import write_with

    wrote = None
    for k in output.key_images or []:
        png = getattr(k, "png", b"")
        if png:
            target = out_dir / "key_images" / f"{k.name}.png"
            if not target.exists():
                write_with(target, lambda p, data=png: p.write_bytes(data))
            wrote = "key_images"
    return wrote
