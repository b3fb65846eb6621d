"""One study under review: its ``scene.mrml`` imported into a scene (trame-slicer's), ROI boxes moved or
resized, ROI voxels erased, and Recompute through the core's re-measure, as the Slicer panel does.

Takes the scene as an argument, like the MRML bridge; nothing here knows about trame. The automatic
result (``results.json``) is read, never written: Recompute works on a copy.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from OsteoAIBaseLib import levels as lv
from OsteoAIBaseLib.errors import InputError
from OsteoAILib import calibration, mrml, remeasure  # noqa: F401 (loaded with the app, not by the first Recompute: ~1.5 s of scipy)
from OsteoAILib.mrml.segmentations import segment_block
from OsteoAILib.results import Results

from .scene_load import import_scene

AXES = {"R": 0, "A": 1, "S": 2}


class ReviewSession:
    def __init__(self, scene, study_dir: Path, meanwhile=None):
        """``meanwhile()``: work for this thread while the CT is read on another (see ``scene_load``)."""
        self.scene = scene
        self.dir = Path(study_dir)
        self.auto = Results.from_dict(json.loads((self.dir / "results.json").read_text()))
        self.current = copy.deepcopy(self.auto)
        self.edits: list[str] = []
        self.recomputed = False
        before = self._node_ids()
        if not import_scene(scene, self.dir / "scene.mrml", meanwhile):
            raise InputError("the study's scene cannot be read")
        self.added = [i for i in self._node_ids() if i not in before]
        self.settings, nodes = mrml.read_parameter_node(scene)
        self.volume = nodes.get("inputVolume")
        self.vertebrae = nodes.get("vertebraeSegmentation")
        self.rois = nodes.get("roiSegmentation")
        self.table = nodes.get("resultsTable")
        self.text = nodes.get("resultsText")
        if self.volume is None or self.rois is None:
            raise InputError("the study's scene has no CT volume or no ROI segmentation")
        self.boxes = mrml.roi_boxes_of(scene, self.rois)
        if nodes.get("keyImages") is not None:  # their labels clutter the slice views; the panel lists them
            nodes["keyImages"].GetDisplayNode().SetVisibility(False)

    def _node_ids(self) -> list[str]:
        col = self.scene.GetNodes()
        return [col.GetItemAsObject(i).GetID() for i in range(col.GetNumberOfItems())]

    def close(self) -> None:
        # The data nodes go before their display nodes: a volume left without its display node while the views
        # still show it gets a new window/level, a histogram of the whole CT (~1 s on 512 x 512).
        nodes = [self.scene.GetNodeByID(node_id) for node_id in reversed(self.added)]
        nodes = [n for n in nodes if n is not None and not n.GetSingletonTag()]
        nodes.sort(key=lambda n: not n.IsA("vtkMRMLDisplayableNode"))
        for node in nodes:
            if self.scene.GetNodeByID(node.GetID()) is None:  # gone with a node removed before it
                continue
            if node.IsA("vtkMRMLSegmentationNode"):
                # A segmentation going away clears its segments one by one, each a pass over the layer they
                # share: ~3 s per segmentation of a 512 x 512 CT. Emptied first, the layers cost nothing.
                segmentation = node.GetSegmentation()
                for layer in range(segmentation.GetNumberOfLayers()):
                    segmentation.GetLayerDataObject(layer).Initialize()
            self.scene.RemoveNode(node)

    def levels(self) -> list[str]:
        return [name for name in self.boxes]

    def _box(self, level: str):
        if level not in self.boxes:
            raise InputError(f"no ROI box for level {level!r}")
        return self.boxes[level]

    def move_box(self, level: str, axis: str, mm: float) -> None:
        """Shift ``level``'s ROI box by ``mm`` along R, A or S (world axes)."""
        box = self._box(level)
        m = mrml._matrix_to_numpy(box.GetObjectToNodeMatrix())
        m[AXES[axis], 3] += mm
        box.GetObjectToNodeMatrix().DeepCopy(mrml._numpy_to_matrix(m))
        box.Modified()
        self.edits.append(f"{level} box moved {mm:+g} mm along {axis}")

    def resize_box(self, level: str, axis: str, mm: float) -> None:
        """Grow (``mm`` > 0) or shrink the box along the box axis closest to world R, A or S."""
        box = self._box(level)
        m = mrml._matrix_to_numpy(box.GetObjectToNodeMatrix())[:3, :3]
        which = int(np.argmax(np.abs(m[AXES[axis], :])))
        size = list(box.GetSize())
        size[which] = max(1.0, size[which] + mm)
        box.SetSize(*size)
        self.edits.append(f"{level} box resized {mm:+g} mm along {axis}")

    def erase_axial(self, level: str, s_mm: float) -> int:
        """Erase ``level``'s ROI voxels in the axial slice at S = ``s_mm`` (the axial view's position);
        returns the number of voxels erased."""
        lab = lv.IDS[level]
        block, mask = segment_block(self.scene, self.rois, lab, self.volume)  # the ROI's own block of the grid
        if block is None:
            return 0
        # voxels whose centre lies within half a slice of the plane: the slice the view shows
        k, j, i = np.nonzero(mask)
        k0, j0, i0 = (b.start for b in block)
        m = mrml.ijk_to_ras(self.volume)
        s = (m @ np.stack([i + i0, j + j0, k + k0, np.ones_like(i)]))[2]
        step = float(np.abs(m[2, :3]).max()) or 1.0  # the grid step along S (largest S component)
        hit = np.abs(s - s_mm) <= step / 2
        if not hit.any():
            return 0
        mask[k[hit], j[hit], i[hit]] = False
        mrml.set_segment_mask(self.rois, lab, mask, self.volume, at=block)
        self.edits.append(f"{level} ROI erased on the axial slice at S = {s_mm:.1f} mm ({int(hit.sum())} voxels)")
        return int(hit.sum())

    def recompute(self) -> Results:
        """The core's re-measure over the edited ROIs, with the automatic run's calibration and estimator."""
        work = copy.deepcopy(self.auto)
        self.current = remeasure_scene(
            self.scene,
            self.volume,
            self.rois,
            work,
            self.boxes,
            self.vertebrae,
            self.table,
            self.settings.diagnosticLevels or None,
        )
        self.recomputed = True
        return self.current

    def teaching(self, level: str) -> dict:
        if self.vertebrae is None:
            return {"level": level, "trabecular_hu": None, "cortical_hu": None, "roi_center_ras": None}
        return mrml.bone_contrast(self.scene, self.volume, self.vertebrae, self.rois, level)


def remeasure_scene(scene, volume, rois, results: Results, boxes, vertebrae, table, diagnostic_levels):
    """What the Slicer panel's Recompute calls: the MRML bridge's ``recompute_from_segmentation`` (edited
    segments and moved boxes -> ROI labelmap), which measures with the core's ``remeasure.remeasure_results``."""
    return mrml.recompute_from_segmentation(
        scene,
        volume,
        rois,
        results,
        roi_boxes=boxes,
        vertebrae_seg_node=vertebrae,
        table_node=table,
        diagnostic_levels=diagnostic_levels,
    )
