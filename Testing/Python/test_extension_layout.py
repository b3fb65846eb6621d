"""The Slicer extension's files agree with each other: every Lib file is built, every .ui is valid
Qt Designer XML bound to real parameters, the module files import only what Slicer provides, the
terminology file matches the core's codes, and only the mrml bridges (mrml.py, mrml/) touch slicer."""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = {"OsteoAI": "OsteoAILib", "OsteoAISegment": "OsteoAISegmentLib"}
# The packages each module's CMakeLists installs: OsteoAISegment, the bottom module, also installs the base
# package OsteoAIBaseLib that both Libs import.
LIBS = {"OsteoAI": ("OsteoAILib",), "OsteoAISegment": ("OsteoAISegmentLib", "OsteoAIBaseLib")}
# What a real 3D Slicer provides to a scripted module at import time (plus the extension's own code).
# SampleData is a core Slicer module (OsteoAI registers the phantom there).
SLICER_PROVIDES = {"slicer", "qt", "ctk", "vtk", "numpy", "SimpleITK", "PyTorchUtils", "SampleData"}
OWN = {"OsteoAILib", "OsteoAISegmentLib", "OsteoAIBaseLib", "OsteoAISegment", "OsteoAI"}
# Each module's panel and logic, in OsteoAILib's Slicer layer (the module file imports them from there)
PANELS = {"OsteoAI": "osteoai_module.py", "OsteoAISegment": "segment_module.py"}


def _cmake_list(text: str, var: str) -> list[str]:
    m = re.search(rf"set\({var}\s+(.*?)\)", text, re.S)
    assert m, f"{var} not set"
    return [x for x in m.group(1).split() if not x.startswith("#")]


@pytest.mark.parametrize("module", MODULES)
def test_every_lib_python_file_is_in_scripts(module):
    text = (REPO / module / "CMakeLists.txt").read_text()
    scripts = {s.replace("${MODULE_NAME}", module) for s in _cmake_list(text, "MODULE_PYTHON_SCRIPTS")}
    on_disk = {
        p.relative_to(REPO / module).as_posix() for lib in LIBS[module] for p in (REPO / module / lib).rglob("*.py")
    }
    on_disk = {p for p in on_disk if "__pycache__" not in p}
    missing = sorted(on_disk - scripts)
    assert not missing, f"{module}/CMakeLists.txt SCRIPTS lacks: {missing}"
    assert f"{module}.py" in scripts
    gone = sorted(s for s in scripts if not (REPO / module / s).is_file())
    assert not gone, f"{module}/CMakeLists.txt lists files that do not exist: {gone}"
    assert "WITH_GENERIC_TESTS" in text and "slicerMacroBuildScriptedModule" in text


@pytest.mark.parametrize("module", MODULES)
def test_resources_exist(module):
    text = (REPO / module / "CMakeLists.txt").read_text()
    res = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    assert f"Resources/UI/{module}.ui" in res and f"Resources/Icons/{module}.png" in res
    for r in res:
        assert (REPO / module / r).is_file(), r


def test_top_level_cmake_describes_the_extension():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"project\(OsteoAI\)", text)
    assert 'EXTENSION_CATEGORY "Quantification"' in text
    assert 'EXTENSION_DEPENDS "PyTorch"' in text
    for m in MODULES:
        assert f"add_subdirectory({m})" in text
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                "EXTENSION_SCREENSHOTURLS"):  # fmt: skip
        assert re.search(rf'set\({key} "[^"]+"\)', text), key
    assert (REPO / "Resources" / "Icons" / "OsteoAI.png").is_file()


def _wrapper_fields(module: str) -> dict[str, object]:
    """Names (and defaults) of the module's parameter node, as OsteoAILib.slicer_ui.parameters declares them
    from the option registry (the panel builds its @parameterNodeWrapper class from the same dicts)."""
    sys.path.insert(0, str(REPO / "OsteoAI"))
    from OsteoAILib.slicer_ui import parameters as pn

    settings, nodes = {"OsteoAI": pn.osteoaiParameters, "OsteoAISegment": pn.segmentParameters}[module]()
    return {**{name: spec[3] for name, spec in settings.items()}, **dict.fromkeys(nodes)}


def check_ui(path: Path, parameters: set[str]) -> list[str]:
    """Problems with a Qt Designer .ui file (empty list when it is valid)."""
    problems = []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        return [f"not XML: {e}"]
    if root.tag != "ui" or root.get("version") != "4.0":
        problems.append('root must be <ui version="4.0">')
    cls = root.findtext("class")
    top = root.find("widget")
    if top is None:
        return problems + ["no top-level <widget>"]
    if cls != top.get("name"):
        problems.append(f"<class> {cls!r} differs from the top widget name {top.get('name')!r}")
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    for c in root.iter("customwidget"):
        if not c.findtext("extends") or not c.findtext("header"):
            problems.append(f"custom widget {c.findtext('class')} lacks <extends> or <header>")
    names = []
    for w in root.iter("widget"):
        wc, name = w.get("class"), w.get("name")
        if not name:
            problems.append(f"a {wc} has no name")
        names.append(name)
        if not (wc.startswith("Q") or wc in custom):
            problems.append(f"widget class {wc} is neither Qt nor declared in <customwidgets>")
    for lay in root.iter("layout"):
        names.append(lay.get("name"))
        for item in lay.findall("item"):
            if len(list(item)) != 1 or list(item)[0].tag not in ("widget", "layout", "spacer"):
                problems.append(f"layout {lay.get('name')} has a malformed <item>")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append(f"duplicate object names: {dup}")
    for p in root.iter("property"):
        if p.get("name") == "SlicerParameterName" and p.findtext("string") not in parameters:
            problems.append(f"SlicerParameterName {p.findtext('string')!r} is not a parameter of the module")
    for conn in root.iter("connection"):
        for end in ("sender", "receiver"):
            if conn.findtext(end) not in names:
                problems.append(f"connection {end} {conn.findtext(end)!r} is not a widget")
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_ui_file_is_valid_designer_xml(module):
    params = set(_wrapper_fields(module))
    path = REPO / module / "Resources" / "UI" / f"{module}.ui"
    assert check_ui(path, params) == []
    text = path.read_text()
    for needed in ("inputVolumeSelector", "segmenterComboBox", "deviceComboBox", "applyButton", "cancelButton",
                   "progressBar", "statusLabel"):  # fmt: skip
        assert f'name="{needed}"' in text, needed
    # every widget the module's panel reaches through self.ui exists in the .ui
    panel = REPO / "OsteoAI" / "OsteoAILib" / "slicer_ui" / PANELS[module]
    used = set(re.findall(r"self\.ui\.(\w+)", panel.read_text()))
    declared = set(re.findall(r'<widget class="[^"]+" name="(\w+)"', text))
    assert used <= declared, f"{module}.py uses widgets missing from the .ui: {sorted(used - declared)}"


def test_check_ui_catches_broken_files(tmp_path):
    bad = tmp_path / "bad.ui"
    bad.write_text('<ui version="4.0"><class>X</class><widget class="ctkFoo" name="Y"/></ui>')
    problems = check_ui(bad, set())
    assert any("differs" in p for p in problems) and any("ctkFoo" in p for p in problems)
    bad.write_text("<ui version='4.0'><class>X</class><widget class='QWidget' name='X'>")
    assert check_ui(bad, set())[0].startswith("not XML")


def test_osteoai_parameters_mirror_the_bridge_settings():
    sys.path.insert(0, str(REPO / "OsteoAI"))
    from dataclasses import fields

    from OsteoAILib import mrml

    wrapper = _wrapper_fields("OsteoAI")
    settings = {f.name: f.default for f in fields(mrml.Settings)}
    assert set(wrapper) == set(settings) | set(mrml.NODE_PARAMETERS)
    for name, default in settings.items():
        assert wrapper[name] == default, name


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.level == 0:
            out.add(n.module.split(".")[0])
    return out


@pytest.mark.parametrize("module", MODULES)
def test_module_files_import_only_what_slicer_provides(module):
    allowed = SLICER_PROVIDES | OWN | set(sys.stdlib_module_names)
    found = _imports(REPO / module / f"{module}.py", top_level_only=False)
    assert found <= allowed, f"{module}.py imports {sorted(found - allowed)}"
    # at load time (module level) nothing beyond Slicer itself and OsteoAILib's Slicer layer (slicer_ui), whose
    # files in turn import at load time only Slicer, the standard library and the pure-Python option registry:
    # a module loads before its dependencies are installed.
    top = _imports(REPO / module / f"{module}.py", top_level_only=True)
    assert top <= {"slicer", "qt", "ctk", "vtk", "OsteoAILib"} | set(sys.stdlib_module_names), sorted(top)
    text = (REPO / module / f"{module}.py").read_text()
    assert not re.findall(r"^from OsteoAILib\.(?!slicer_ui\.)", text, re.M), "module files import only slicer_ui"
    assert "OsteoAISegment" not in found - {module}, "one module file never imports the other"


def test_slicer_layer_loads_with_what_slicer_provides():
    ui = REPO / "OsteoAI" / "OsteoAILib" / "slicer_ui"
    for path in ui.glob("*.py"):
        top = _imports(path, top_level_only=True)
        assert top <= {"slicer", "qt", "ctk", "vtk"} | set(sys.stdlib_module_names), (path.name, sorted(top))


def test_only_mrml_files_import_slicer():
    offenders = []
    for lib in ("OsteoAI/OsteoAILib", "OsteoAISegment/OsteoAISegmentLib", "OsteoAISegment/OsteoAIBaseLib"):
        for p in (REPO / lib).rglob("*.py"):
            parts = p.relative_to(REPO / lib).parts[:-1]
            bridge = p.name == "mrml.py" or "mrml" in parts or "slicer_ui" in parts  # the Slicer layer
            if not bridge and _imports(p, False) & {"slicer", "qt", "ctk", "vtk"}:
                offenders.append(p.relative_to(REPO).as_posix())
    assert not offenders, offenders


def test_terminology_file_matches_the_core_codes():
    sys.path.insert(0, str(REPO / "OsteoAI"))
    from OsteoAIBaseLib.levels import IDS
    from OsteoAILib import mrml
    from OsteoAILib.terminology import SNOMED_VERTEBRA, level_color

    doc = json.loads(
        (REPO / "OsteoAI" / "Resources" / "SegmentationCategoryTypeModifier-OsteoAI.term.json").read_text()
    )
    assert doc["SegmentationCategoryTypeContextName"] == mrml.TERMINOLOGY_CONTEXT
    cats = {c["CodeMeaning"]: c for c in doc["SegmentationCodes"]["Category"]}
    types = {t["CodeMeaning"]: t for t in cats["Anatomical Structure"]["Type"]}
    assert {f"{lv} vertebra" for lv in SNOMED_VERTEBRA} == set(types)
    for lv, code in SNOMED_VERTEBRA.items():
        t = types[f"{lv} vertebra"]
        assert t["CodeValue"] == code and t["CodingSchemeDesignator"] == "SCT"
        assert t["recommendedDisplayRGBValue"] == [round(255 * c) for c in level_color(IDS[lv])]
    assert cats["Tissue"]["Type"][0]["CodeValue"] == mrml.TYPE_CANCELLOUS_BONE[1]


def test_terminology_loads_in_slicer_and_segment_entries_resolve():
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
    sys.path.insert(0, str(REPO / "OsteoAI"))
    from OsteoAILib import mrml

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    path = REPO / "OsteoAI" / "Resources" / "SegmentationCategoryTypeModifier-OsteoAI.term.json"
    assert logic.LoadTerminologyFromFile(str(path)) == mrml.TERMINOLOGY_CONTEXT
    for level, code in (("T12", "23215003"), ("L1", "66794005"), ("L5", "49668003")):
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(mrml.vertebra_terminology(level), entry)
        assert entry.GetTypeObject().GetCodeValue() == code
        assert entry.GetTypeObject().GetCodeMeaning() == f"{level} vertebra"
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(mrml.roi_terminology("L1"), entry)
    assert entry.GetTypeObject().GetCodeValue() == "4421005"
    assert entry.GetAnatomicRegionObject().GetCodeValue() == "66794005"
