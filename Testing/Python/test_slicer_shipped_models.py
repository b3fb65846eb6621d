"""The shipped models travel with both installs, found without environment variables: the wheel (package
data OsteoAIBaseLib/models/) and the Slicer extension (CMake install into OsteoAIBaseLib/models/)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from OsteoAIBaseLib import model_registry

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(f"{name}/{file}" for (name, _), files in model_registry.PINNED.items() for file in files)


def _cmake_models() -> list[str]:
    text = (REPO / "OsteoAISegment" / "CMakeLists.txt").read_text()
    m = re.search(r"set\(OSTEOAI_SHIPPED_MODEL_FILES\s+(.*?)\)", text, re.S)
    assert m, "OSTEOAI_SHIPPED_MODEL_FILES not set in OsteoAISegment/CMakeLists.txt"
    assert "install(FILES" in text and "OsteoAIBaseLib/models/" in text
    return m.group(1).split()


def test_cmake_and_wheel_ship_the_same_model_files_with_every_pinned_one():
    cmake = _cmake_models()
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert data["package-dir"]["OsteoAIBaseLib.models"] == "models"
    wheel = data["package-data"]["OsteoAIBaseLib.models"]
    assert sorted(cmake) == sorted(wheel)
    for f in SHIPPED + [f"{name}/model.json" for name, _ in model_registry.PINNED]:
        assert f in cmake, f"{f} is pinned but not installed"
        assert (REPO / "models" / f).is_file(), f


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """``pip wheel`` of a copy of the sources (the build writes build/ and egg-info next to them)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md", "LICENSE.txt"):
        shutil.copy2(REPO / f, src / f)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    # every package folder pyproject.toml maps (the models folder is copied below, only the shipped files)
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for folder in {d for d in package_dirs.values() if d != "models"}:
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    for f in _cmake_models():
        (src / "models" / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "models" / f, src / "models" / f)
    out = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)  # fmt: skip
    if r.returncode != 0 and "No module named pip" in r.stderr:
        pytest.skip("pip is not available in this environment")
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("osteoai-*.whl")
    return whl


def test_wheel_holds_the_pinned_weights(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for (name, _), files in model_registry.PINNED.items():
            assert f"OsteoAIBaseLib/models/{name}/model.json" in names
            for file, digest in files.items():
                member = f"OsteoAIBaseLib/models/{name}/{file}"
                assert member in names, f"{member} is not in {wheel.name}"
                import hashlib

                assert hashlib.sha256(z.read(member)).hexdigest() == digest, member


def test_installed_wheel_uses_the_shipped_models_without_env_vars(wheel, small_phantom_nrrd, tmp_path):
    """The wheel unpacked as site-packages (no repository next to it): auto picks the AI vBMD model."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    inp = small_phantom_nrrd
    env = {k: v for k, v in os.environ.items() if k not in ("OSTEOAI_MODELS", "OSTEOAI_VBMD_MODEL")}
    env["PYTHONPATH"] = str(site)
    code = ("import OsteoAILib, sys; from OsteoAILib.vbmd_model import infer; "
            "from OsteoAISegmentLib.ai import inference; "
            "print(OsteoAILib.__file__); print(infer.model_dir()); print(inference.check_weights()[1]); "
            "from OsteoAILib.cli import main; sys.exit(main(sys.argv[1:]))")  # fmt: skip
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", code, "run", str(inp), "--out", str(out), "--segmenter", "classical",
                        "--key-images", "0", "--quiet"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    lib, vbmd_dir, seg_weights = r.stdout.splitlines()[:3]
    for p in (lib, vbmd_dir, seg_weights):
        assert Path(p).resolve().is_relative_to(site.resolve()), p
    import json

    results = json.loads((out / "results.json").read_text())
    assert "ai:vbmd-mlp" in json.dumps(results), "auto did not use the shipped vBMD model"
