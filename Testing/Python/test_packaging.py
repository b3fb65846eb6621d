"""The pip package ships every subpackage and the data files the core reads at run time."""

from __future__ import annotations

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_in_pyproject():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    roots = {name: REPO / path for name, path in cfg["package-dir"].items()}
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            found.add(".".join((name, *rel)))
    assert found == listed, f"missing: {sorted(found - listed)}; stale: {sorted(listed - found)}"


def test_console_script_points_at_the_cli():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert cfg["project"]["scripts"]["osteoai"] == "OsteoAILib.cli:main"
    assert "torch==2.13.0" in cfg["project"]["dependencies"]
