"""The module's parameter node, in the ``parameterNodeWrapper`` encoding, and the panel settings
<-> pipeline options."""

from __future__ import annotations

from dataclasses import dataclass, fields

from OsteoAIBaseLib.errors import InputError

from .constants import MODULE_NAME


@dataclass
class Settings:
    """Every setting of the OsteoAI panel; the module's ``@parameterNodeWrapper`` class mirrors
    these names and types so a saved scene reopens with the same settings."""

    segmenter: str = "auto"
    device: str = "cpu"
    levels: str = ""  # "" = every level found
    calibration: str = "auto"
    kvp: float = 0.0  # 0 = from the DICOM tags
    phantomPairs: str = ""  # "HU:mg, HU:mg" rod pairs for phantom calibration
    diagnosticLevels: str = ""
    vbmdMethod: str = "auto"
    nKeyImages: int = 4
    radiomics: bool = False


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


def settings_from_options(options) -> Settings:
    pairs = ", ".join(f"{h:g}:{m:g}" for h, m in (options.phantom_pairs or []))
    return Settings(
        segmenter=options.segmenter, device=options.device, levels=options.levels or "",
        calibration=options.calibration, kvp=float(options.kvp or 0.0), phantomPairs=pairs,
        diagnosticLevels=options.diagnostic_levels or "", vbmdMethod=options.vbmd_method,
        nKeyImages=int(options.n_key_images), radiomics=bool(options.radiomics),
    )  # fmt: skip


def options_from_settings(s: Settings):
    from ..pipeline import PipelineOptions

    pairs = []
    for part in s.phantomPairs.split(","):
        if part.strip():
            try:
                h, m = part.split(":")
                pairs.append((float(h), float(m)))
            except ValueError:
                raise InputError(f"phantom pair {part.strip()!r} is not 'HU:mg/cm3'") from None
    return PipelineOptions(
        levels=s.levels or None, calibration=s.calibration, phantom_pairs=pairs or None,
        segmenter=s.segmenter, device=s.device, kvp=s.kvp or None,
        diagnostic_levels=s.diagnosticLevels or None, vbmd_method=s.vbmdMethod,
        n_key_images=s.nKeyImages, radiomics=s.radiomics,
    )  # fmt: skip
