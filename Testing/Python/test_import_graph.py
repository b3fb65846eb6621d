"""The packages form a tree and the modules no circle (docs/ARCHITECTURE.md, "Layers").

    OsteoAIBaseLib  <-  OsteoAISegmentLib  <-  OsteoAILib core  <-  MRML bridges  <-  entry points

Read from the source with ``ast`` (nothing is imported), so a violation is found even in a module whose
dependencies are not installed. The layer rules count every import, also those inside functions (a lazy
import is still a dependency); the cycle rule counts every import between modules too, so a circle cannot
hide behind a function-level import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "OsteoAIBaseLib": REPO / "OsteoAISegment" / "OsteoAIBaseLib",
    "OsteoAISegmentLib": REPO / "OsteoAISegment" / "OsteoAISegmentLib",
    "OsteoAILib": REPO / "OsteoAI" / "OsteoAILib",
    "OsteoAIWeb": REPO / "OsteoAIWeb",  # the web app, an entry point on top
}
PACKAGES = {name: root for name, root in PACKAGES.items() if root.is_dir()}
GUI = {"slicer", "qt", "ctk", "vtk", "mrml"}
# OsteoAILib modules that are not the pure core: the MRML bridges and the entry points above them
# (the Slicer modules' widgets and logic, command line, batch runner, DICOM node, web app). Everything
# else in OsteoAILib is the pure core.
NOT_CORE = ("OsteoAILib.mrml", "OsteoAILib.slicer_ui", "OsteoAILib.cli", "OsteoAILib.commands", "OsteoAILib.batch",
            "OsteoAILib.dicom_node", "OsteoAILib.web")  # fmt: skip


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package)."""
    out = {}
    for name, root in PACKAGES.items():
        for f in root.rglob("*.py"):
            if "__pycache__" in f.parts:
                continue
            parts = [name, *f.relative_to(root).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


MODULES = _modules()


def _targets(module: str, is_pkg: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement reaches: our own modules where it names one, else the top
    name of the outside package (``slicer``, ``numpy``...)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]
    out = []
    for n in names:
        while n not in MODULES and "." in n:
            n = n.rsplit(".", 1)[0]
        out.append(n)
    return out


def _imports() -> dict[str, set[str]]:
    """Module -> everything it imports, wherever the statement is (module level or inside a function)."""
    graph = {}
    for module, (path, is_pkg) in MODULES.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.update(_targets(module, is_pkg, node))
        graph[module] = found - {module}
    return graph


GRAPH = _imports()


def _in(module: str, prefixes) -> bool:
    """``module`` is one of ``prefixes`` or inside one of them (a package and its submodules)."""
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _offenders(sources, forbidden) -> list[str]:
    """'a imports b' for every module a in (or under) ``sources`` that imports something in ``forbidden``."""
    return sorted(f"{m} imports {t}" for m in GRAPH if _in(m, sources) for t in GRAPH[m] if _in(t, forbidden))


def test_the_graph_sees_the_packages():
    # a guard against a rule passing because the parser found nothing
    assert {"OsteoAIBaseLib.volume", "OsteoAISegmentLib.api", "OsteoAILib.pipeline"} <= set(GRAPH)
    assert "OsteoAISegmentLib.api" in GRAPH["OsteoAILib.pipeline"]
    assert "OsteoAIBaseLib.volume" in GRAPH["OsteoAISegmentLib.api"]
    assert "slicer" in GRAPH["OsteoAILib.mrml.scene"]


def test_base_imports_nothing_above_it():
    assert _offenders("OsteoAIBaseLib", ("OsteoAISegmentLib", "OsteoAILib", "OsteoAIWeb", *GUI)) == []


def test_segment_never_imports_the_osteoai_core():
    assert _offenders("OsteoAISegmentLib", ("OsteoAILib", "OsteoAIWeb", *GUI)) == []


def test_pure_core_imports_no_slicer_qt_vtk_or_mrml():
    core = {m for m in GRAPH if _in(m, "OsteoAILib") and not _in(m, NOT_CORE)}
    above = (*GUI, "OsteoAILib.mrml", *NOT_CORE, "OsteoAIWeb")
    found = [f"{m} imports {t}" for m in sorted(core) for t in sorted(GRAPH[m]) if _in(t, above)]
    assert found == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next((w for w in it if w in graph), None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_a_tree_level(package):
    """Package level: base <- segment <- core, never the other way."""
    order = list(PACKAGES)
    above = order[order.index(package) + 1 :]
    if above:
        assert _offenders(package, above) == []
