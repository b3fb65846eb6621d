"""The module's parameter node, in the ``parameterNodeWrapper`` encoding.

The settings it stores (:class:`Settings`) and their conversion to and from pipeline options are generated
from the option registry (:mod:`OsteoAILib.options`) and re-exported here for the scene code."""

from __future__ import annotations

from dataclasses import fields

from ..options import Settings, options_from_settings, settings_from_options
from .constants import MODULE_NAME

__all__ = [
    "NODE_PARAMETERS",
    "Settings",
    "get_parameter_node",
    "options_from_settings",
    "read_parameter_node",
    "settings_from_options",
    "write_parameter_node",
]

# node-valued parameters of the wrapper: name -> MRML class
NODE_PARAMETERS = {
    "inputVolume": "vtkMRMLScalarVolumeNode",
    "vertebraeSegmentation": "vtkMRMLSegmentationNode",
    "roiSegmentation": "vtkMRMLSegmentationNode",
    "resultsTable": "vtkMRMLTableNode",
    "resultsText": "vtkMRMLTextNode",
    "keyImages": "vtkMRMLMarkupsFiducialNode",
}


def _encode(value) -> str:
    if isinstance(value, bool):  # parameterNodeWrapper BoolSerializer
        return "True" if value else "False"
    return str(value)  # NumberSerializer / StringSerializer


def _decode(text: str, typ):
    if typ in (bool, "bool"):
        return text == "True"
    if typ in (int, "int"):
        return int(text)
    if typ in (float, "float"):
        return float(text)
    return text


def get_parameter_node(scene, module_name: str = MODULE_NAME, create: bool = True):
    """The module's singleton ``vtkMRMLScriptedModuleNode``, found or made as ScriptedLoadableModuleLogic does."""
    node = scene.GetSingletonNode(module_name, "vtkMRMLScriptedModuleNode")
    if node is None and create:
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        node.SetSingletonTag(module_name)
        node.SetName(scene.GenerateUniqueName(module_name))
        node.SetAttribute("ModuleName", module_name)
        node = scene.AddNode(node)
    return node


def write_parameter_node(scene, settings: Settings, nodes: dict | None = None, module_name: str = MODULE_NAME):
    node = get_parameter_node(scene, module_name)
    for f in fields(Settings):
        node.SetParameter(f.name, _encode(getattr(settings, f.name)))
    for key, value in (nodes or {}).items():
        if key not in NODE_PARAMETERS:
            raise ValueError(f"unknown node parameter {key!r}")
        node.SetParameter(key, "")  # NodeSerializer writes both
        node.SetNodeReferenceID(key, value.GetID() if value is not None else None)
    return node


def read_parameter_node(scene, module_name: str = MODULE_NAME) -> tuple[Settings, dict]:
    node = get_parameter_node(scene, module_name, create=False)
    s = Settings()
    if node is None:
        return s, {}
    types = {f.name: f.type for f in fields(Settings)}
    for name, typ in types.items():
        if name in _names(node):
            setattr(s, name, _decode(node.GetParameter(name), typ))
    nodes = {k: node.GetNodeReference(k) for k in NODE_PARAMETERS if node.GetNodeReference(k) is not None}
    return s, nodes


def _names(node) -> set:
    return set(node.GetParameterNames())
