"""docs/make_screenshots.py renders the extension's screenshots from a scene the pipeline wrote, and the
committed screenshots are the ones the README and CMakeLists.txt (Extensions Index) show."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "make_screenshots.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_screenshots", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_screenshots_are_referenced_by_readme_and_cmakelists():
    files = _script().FILES
    readme = (REPO / "README.md").read_text()
    cmake = (REPO / "CMakeLists.txt").read_text()
    shots = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]*)"\)', cmake).group(1)
    for name in files:
        assert (REPO / "docs" / "images" / name).is_file(), name
        assert f"](docs/images/{name})" in readme, name
        assert f"/docs/images/{name}" in shots, name


def test_screenshots_are_rendered_from_the_written_scene(tmp_path):
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    pytest.importorskip("matplotlib")
    from PIL import Image

    mod = _script()
    work = tmp_path / "work"
    work.mkdir()
    paths = mod.make_screenshots(tmp_path / "images", matrix=128, work=work)
    assert (work / "run" / "scene.mrml").is_file()  # what the pictures were drawn from
    assert [p.name for p in paths] == list(mod.FILES)
    data = mod.read_scene(work / "run" / "scene.mrml")
    assert data["rows"] and any(r["vBMD"] == r["vBMD"] for r in data["rows"])  # a measured level
    assert len(data["plot"]["series"]) == 3
    views = np.asarray(Image.open(paths[0]).convert("RGB")).astype(int)
    r, g, b = views[..., 0], views[..., 1], views[..., 2]
    roi_yellow = (r > 200) & (g > 170) & (b < 80)  # the trabecular ROIs, drawn solid yellow
    assert roi_yellow.sum() > 200
    n_colours = len({tuple(c) for c in views[::4, ::4].reshape(-1, 3) if c.max() - c.min() > 40})
    assert n_colours > 20  # coloured vertebra segments over a grey CT, not a blank frame
    for p in paths[1:]:
        with Image.open(p) as im:
            assert min(im.size) > 300
