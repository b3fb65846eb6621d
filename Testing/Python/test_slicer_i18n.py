"""User-visible strings of both module files are marked for translation the way current Slicer modules do it
(``from slicer.i18n import tr as _``), in a form Qt's lupdate can extract, and the panels show the translation."""

from __future__ import annotations

import ast
import string

import pytest
from support import slicer_harness

REPO = slicer_harness.REPO
UI = REPO / "OsteoAI" / "OsteoAILib" / "slicer_ui"
# Each module: its module file and the Lib files of its panel and logic (translation context: the file)
FILES = {
    "OsteoAI": [
        REPO / "OsteoAI" / "OsteoAI.py",
        UI / "osteoai_module.py",
        UI / "sample_data.py",
        UI / "dependencies.py",
        UI / "background.py",
    ],
    "OsteoAISegment": [
        REPO / "OsteoAISegment" / "OsteoAISegment.py",
        UI / "segment_module.py",
        UI / "dependencies.py",
        UI / "background.py",
    ],
}
ERRORS = ("RuntimeError", "ValueError")


def _tree(module):
    return ast.Module(body=[n for f in FILES[module] for n in ast.parse(f.read_text()).body], type_ignores=[])


def _is_tr(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "translate")) or (
        isinstance(node, ast.BinOp) and (_is_tr(node.left) or _is_tr(node.right))) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
        and _is_tr(node.func.value))  # fmt: skip


@pytest.mark.parametrize("path", [f for files in FILES.values() for f in files], ids=lambda p: p.name)
def test_tr_is_imported_from_slicer_i18n(path):
    imports = {(n.module, a.name, a.asname) for n in ast.walk(ast.parse(path.read_text()))
               if isinstance(n, ast.ImportFrom) for a in n.names}  # fmt: skip
    assert ("slicer.i18n", "tr", "_") in imports


@pytest.mark.parametrize("module", FILES)
def test_every_marked_string_is_a_literal_lupdate_can_extract(module):
    calls = [n for n in ast.walk(_tree(module)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == "_"]  # fmt: skip
    assert len(calls) >= 15, f"only {len(calls)} strings marked in {module}'s files"
    for c in calls:
        assert len(c.args) == 1 and not c.keywords, ast.unparse(c)
        arg = c.args[0]
        assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), f"not a literal: {ast.unparse(c)}"
        # placeholders are named, so a translation may reorder them
        fields = [f for _, f, _, _ in string.Formatter().parse(arg.value) if f is not None]
        assert all(f and not f.isdigit() for f in fields), arg.value


def _literal(node) -> bool:
    return isinstance(node, ast.Constant | ast.JoinedStr) or (
        isinstance(node, ast.BinOp) and (_literal(node.left) or _literal(node.right))
    )


@pytest.mark.parametrize("module", FILES)
def test_no_user_visible_literal_is_left_unmarked(module):
    """Module title, help and acknowledgement, widget texts, error dialogs and raised messages."""
    left = []
    for n in ast.walk(_tree(module)):
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Attribute):
            attr, value = n.targets[0].attr, n.value
            if attr in ("title", "helpText", "acknowledgementText") and not _is_tr(value):
                left.append(ast.unparse(n))
            if attr == "text":
                parts = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
                if any(_literal(v) and not _is_tr(v) for v in parts):
                    left.append(ast.unparse(n))
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "tryWithErrorDisplay" and n.args:
            if not _is_tr(n.args[0]):
                left.append(ast.unparse(n))
        if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call) and getattr(n.exc.func, "id", "") in ERRORS:
            if n.exc.args and _literal(n.exc.args[0]) and not _is_tr(n.exc.args[0]):
                left.append(ast.unparse(n))
    assert not left, "\n".join(left)


@pytest.fixture
def translated(tmp_path, monkeypatch):
    """Both modules loaded under a translator that marks every string it translates with its context."""
    if not (slicer_harness.SLICER_PYTHON / "slicer" / "ScriptedLoadableModule.py").is_file():
        pytest.skip(slicer_harness.SKIP_REASON)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with slicer_harness.harness(tmp_path) as h:
        import slicer

        slicer.app.translate = lambda context, text: f"[{context}]{text}"
        h.load_module("OsteoAISegment")
        h.load_module("OsteoAI")
        yield h


def test_panels_show_the_translation(translated):
    import slicer

    h = translated
    assert slicer.modules.osteoai.title == "[OsteoAI]OsteoAI"
    assert slicer.modules.osteoaisegment.title == "[OsteoAISegment]OsteoAI Segment"
    assert slicer.modules.osteoai.categories == ["[qSlicerAbstractCoreModule]Quantification"]
    assert slicer.modules.osteoai.helpText.startswith("[OsteoAI]")
    # the panels' strings are in the Lib: their context is package.file, as lupdate names it
    w = h.widget("OsteoAI")
    assert w.ui.diagnosisLabel.text == "[slicer_ui.osteoai_module]No result yet."
    assert w.ui.dependencyStatusLabel.text.startswith("[slicer_ui.osteoai_module]")
    assert h.modules["OsteoAI"].teachingHtml().startswith("[slicer_ui.osteoai_module]")
    s = h.widget("OsteoAISegment")
    assert s.ui.statusLabel.text == "[slicer_ui.segment_module]Select an input CT."
