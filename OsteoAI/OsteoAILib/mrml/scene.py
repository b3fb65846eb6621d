"""A headless scene that behaves like Slicer's for what the bridge needs; subject hierarchy
placement; saving and loading ``.mrml`` scenes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import slicer
from OsteoAIBaseLib.errors import InputError

from .constants import ATTR


class HeadlessScene:
    """A ``vtkMRMLScene`` with the logics that Slicer would register on it.

    The logics must outlive every use of the scene: they register storage node classes, the
    segmentation converter rules (closed surface) and the subject hierarchy. Dropping the
    application logic while the scene is alive makes slicer-core segfault, so keep this object.
    """

    def __init__(self):
        from vtkmodules.vtkCommonCore import vtkCollection

        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().AddDefaultColorNodes()
        self.app_logic.SetSliceLogics(vtkCollection())
        self.app_logic.SetViewLogics(vtkCollection())
        self.logics = {}
        for key, cls in (
            ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
            ("Markups", slicer.vtkSlicerMarkupsLogic),
            ("Tables", slicer.vtkSlicerTablesLogic),
            ("Texts", slicer.vtkSlicerTextsLogic),
            ("Plots", slicer.vtkSlicerPlotsLogic),
        ):
            logic = cls()
            logic.SetMRMLScene(self.scene)
            logic.SetMRMLApplicationLogic(self.app_logic)
            self.app_logic.SetModuleLogic(key, logic)
            self.logics[key] = logic
        slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(self.scene)
        self.sh_logic = slicer.vtkSlicerSubjectHierarchyModuleLogic()
        self.sh_logic.SetMRMLScene(self.scene)
        self.sh_logic.SetMRMLApplicationLogic(self.app_logic)

    def close(self):
        self.scene.Clear(1)


def new_scene() -> HeadlessScene:
    return HeadlessScene()


def _sh_item(scene, node) -> int:
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(sh.GetSceneItemID(), node)
    return item


def place_next_to(scene, node, ref_node) -> None:
    """Put ``node`` in the same subject hierarchy folder/study as ``ref_node``."""
    if ref_node is None:
        return
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemParent(_sh_item(scene, ref_node))
    sh.SetItemParent(_sh_item(scene, node), parent)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "node"


def save_scene(scene, path: str | os.PathLike) -> Path:
    """Write every storable node next to ``path`` and the ``.mrml`` itself (atomically)."""
    path = Path(path).resolve()
    out_dir = path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    col = scene.GetNodesByClass("vtkMRMLStorableNode")
    for n in range(col.GetNumberOfItems()):
        node = col.GetItemAsObject(n)
        # Hidden storable nodes are Slicer's defaults (colour tables...): the application has them.
        if not node.GetSaveWithScene() or (node.GetHideFromEditors() and not node.IsA("vtkMRMLTableNode")):
            continue
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is None:
            continue
        storage = node.GetStorageNode()
        if storage is None:
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
        if storage is None:
            continue
        ext = storage.GetDefaultWriteFileExtension()
        stem = _safe(node.GetName())
        fname = f"{stem}.{ext}"
        i = 2
        while fname in used:
            fname = f"{stem}_{i}.{ext}"
            i += 1
        used.add(fname)
        target = out_dir / fname
        if hasattr(storage, "SetUseCompression"):
            storage.SetUseCompression(1)
        if hasattr(storage, "SetCropToMinimumExtent"):
            # a segmentation's file holds the block around its segments, not the whole CT grid: the review app
            # opens a 512 x 512 CT's scene ~0.9 s sooner, and the segments read back the same
            storage.SetCropToMinimumExtent(True)
        # Written in place: table storage writes a companion .schema.tsv under a name derived from
        # this one, so a temp-then-rename would leave the schema path pointing at the temp file.
        # The scene file itself is renamed into place last, so a reader never opens a half scene.
        storage.SetFileName(str(target))
        if not storage.WriteData(node):
            raise OSError(f"cannot write {fname} for node {node.GetName()!r}")
    scene.SetRootDirectory(str(out_dir))
    # Commit then rename. (atomic.atomic_path's hidden temp name confuses MRML's private-data folder logic.)
    tmp = out_dir / f"{path.stem}-{os.getpid()}-partial.mrml"
    try:
        scene.SetURL(str(path))
        if not scene.Commit(str(tmp)):
            raise OSError(f"cannot write scene {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    scene.SetURL(str(path))
    return path


def load_scene(path: str | os.PathLike) -> HeadlessScene:
    """A headless scene with ``path`` imported (volumes, segmentations, tables read from disk)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scene not found: {path}")
    hs = new_scene()
    hs.scene.SetURL(str(path.resolve()))
    if not hs.scene.Import():
        raise InputError(f"cannot read scene {path}")
    return hs


def nodes_by_kind(scene, kind: str, cls: str = "vtkMRMLNode") -> list:
    col = scene.GetNodesByClass(cls)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())
            if col.GetItemAsObject(i).GetAttribute(ATTR + "kind") == kind]  # fmt: skip
