"""MRML bridge: OsteoAI results as 3D Slicer scene nodes, and edited nodes back into the core.

The only core-side package that imports ``slicer``. Every function takes the scene (or a node) as an
argument, so the same code runs inside Slicer (``slicer.mrmlScene``) and headless under
``slicer-core`` (:func:`new_scene`, used by ``osteoai run --scene`` and the tests). Nothing here
touches ``slicer.app``, ``slicer.mrmlScene`` or qt.

Callers import from here (``from OsteoAILib import mrml``); the submodules are an implementation
detail: ``scene`` (headless scene, save/load), ``volumes``, ``segmentations`` (segments and their
terminology), ``roi_boxes``, ``tables`` (results table, plot, results text), ``key_images``,
``parameters`` (Settings, parameter node), ``write`` (whole output, ``scene.mrml``), ``recompute``
and ``teaching``.
"""

from __future__ import annotations

from .constants import (
    ANATOMIC_CONTEXT,
    ATTR,
    BINARY_LABELMAP,
    CATEGORY_ANATOMY,
    CATEGORY_TISSUE,
    MODULE_NAME,
    TERMINOLOGY_CONTEXT,
    TYPE_CANCELLOUS_BONE,
)
from .key_images import add_key_images, key_image_positions
from .parameters import (
    NODE_PARAMETERS,
    Settings,
    get_parameter_node,
    options_from_settings,
    read_parameter_node,
    settings_from_options,
    write_parameter_node,
)
from .recompute import recompute_from_segmentation
from .roi_boxes import add_roi_box, box_mask, box_moved, roi_boxes_of
from .scene import HeadlessScene, load_scene, new_scene, nodes_by_kind, place_next_to, save_scene
from .scene import _sh_item as _sh_item
from .segmentations import (
    add_roi_segmentation,
    add_vertebrae_segmentation,
    roi_terminology,
    segmentation_to_labelmap,
    set_segment_mask,
    vertebra_terminology,
)
from .tables import (
    COLUMNS,
    INT_COLUMNS,
    STRING_COLUMNS,
    add_results_table,
    add_results_text,
    results_from_text,
    summary_rows,
    table_to_rows,
)
from .tables import _table_rows as _table_rows
from .teaching import add_calibration_fit, bone_contrast
from .volumes import _matrix_to_numpy as _matrix_to_numpy
from .volumes import _numpy_to_matrix as _numpy_to_matrix
from .volumes import add_volume_node, ijk_to_ras, volume_from_node
from .write import ResultNodes, add_pipeline_output, write_scene
from .write import _volume_name as _volume_name

# The `_name as _name` imports above keep the private helpers the tests reach as ``mrml._name``
# (from when the bridge was one file); __all__ is the public API.
__all__ = [
    "ANATOMIC_CONTEXT",
    "ATTR",
    "BINARY_LABELMAP",
    "CATEGORY_ANATOMY",
    "CATEGORY_TISSUE",
    "COLUMNS",
    "HeadlessScene",
    "INT_COLUMNS",
    "MODULE_NAME",
    "NODE_PARAMETERS",
    "ResultNodes",
    "STRING_COLUMNS",
    "Settings",
    "TERMINOLOGY_CONTEXT",
    "TYPE_CANCELLOUS_BONE",
    "add_calibration_fit",
    "add_key_images",
    "add_pipeline_output",
    "add_results_table",
    "add_results_text",
    "add_roi_box",
    "add_roi_segmentation",
    "add_vertebrae_segmentation",
    "add_volume_node",
    "bone_contrast",
    "box_mask",
    "box_moved",
    "get_parameter_node",
    "ijk_to_ras",
    "key_image_positions",
    "load_scene",
    "new_scene",
    "nodes_by_kind",
    "options_from_settings",
    "place_next_to",
    "read_parameter_node",
    "recompute_from_segmentation",
    "results_from_text",
    "roi_boxes_of",
    "roi_terminology",
    "save_scene",
    "segmentation_to_labelmap",
    "set_segment_mask",
    "settings_from_options",
    "summary_rows",
    "table_to_rows",
    "vertebra_terminology",
    "volume_from_node",
    "write_parameter_node",
    "write_scene",
]
