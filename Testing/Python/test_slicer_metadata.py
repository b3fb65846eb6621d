"""The extension's metadata for the Slicer Extensions Index: the catalog entry (ExtensionsIndex/OsteoAI.json)
follows Slicer's catalog-entry schema v1.0.1, agrees with the top-level CMakeLists.txt, and every homepage,
icon and screenshot URL of the CMakeLists names a file (or README heading) of this very repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "ExtensionsIndex" / "OsteoAI.json"
SCHEMA_URL = (
    "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#"
)
# Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json: required keys, then every allowed key
# with its type ("additionalProperties": false) and its enum where it has one.
REQUIRED = ("$schema", "category", "scm_url")
PROPERTIES = {
    "$schema": str,
    "category": str,
    "scm_url": str,
    "scm_revision": str,
    "scm_type": str,
    "build_dependencies": list,
    "build_subdirectory": str,
    "enabled": bool,
    "tier": int,
}
ENUMS = {"scm_type": ("git", "local"), "tier": (1, 3, 5)}
RAW = "https://raw.githubusercontent.com/osteoai/osteoai/main/"
BLOB = "https://github.com/osteoai/osteoai/blob/main/"


def _cmake() -> dict[str, str]:
    text = (REPO / "CMakeLists.txt").read_text()
    return dict(re.findall(r'^set\((EXTENSION_\w+)\s+"([^"]*)"\)', text, re.M))


def _entry() -> dict:
    return json.loads(ENTRY.read_text())


def test_catalog_entry_follows_the_schema():
    entry = _entry()
    assert entry["$schema"] == SCHEMA_URL
    for key in REQUIRED:
        assert key in entry, f"{key} is required"
    extra = sorted(set(entry) - set(PROPERTIES))
    assert not extra, f"not allowed by the schema (additionalProperties is false): {extra}"
    for key, value in entry.items():
        assert type(value) is PROPERTIES[key], f"{key}: {type(value).__name__}"
        if key in ENUMS:
            assert value in ENUMS[key], f"{key}={value!r} not in {ENUMS[key]}"
    assert all(isinstance(d, str) and d for d in entry.get("build_dependencies", []))


def test_catalog_entry_is_named_after_the_cmake_project():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"^project\((\w+)\)", text, re.M).group(1) == ENTRY.stem


def test_catalog_entry_agrees_with_cmakelists():
    entry, cm = _entry(), _cmake()
    assert entry["category"] == cm["EXTENSION_CATEGORY"]
    depends = [] if cm["EXTENSION_DEPENDS"] in ("", "NA") else cm["EXTENSION_DEPENDS"].split()
    assert sorted(entry.get("build_dependencies", [])) == sorted(depends)
    repo_url = entry["scm_url"].removesuffix(".git")
    assert cm["EXTENSION_HOMEPAGE"].startswith(repo_url + "/")
    for url in [cm["EXTENSION_ICONURL"], *cm["EXTENSION_SCREENSHOTURLS"].split()]:
        assert url.startswith(RAW) and RAW.startswith(repo_url.replace("github.com", "raw.githubusercontent.com"))
    assert entry.get("scm_revision", "main") == RAW.rstrip("/").rsplit("/", 1)[1]
    for key in ("EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION"):
        assert cm[key].strip(), key


def _repo_file(url: str) -> Path:
    for base in (RAW, BLOB):
        if url.startswith(base):
            return REPO / url[len(base) :].split("#", 1)[0]
    pytest.fail(f"{url} does not point into this repository ({RAW} or {BLOB})")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_homepage_resolves_within_the_repository():
    url = _cmake()["EXTENSION_HOMEPAGE"]
    path = _repo_file(url)
    assert path.is_file(), url
    if "#" in url:
        headings = re.findall(r"^#+\s+(.+)$", path.read_text(), re.M)
        assert url.split("#", 1)[1] in {_anchor(h) for h in headings}, url


def test_icon_and_screenshots_resolve_to_images_in_the_repository():
    from PIL import Image

    cm = _cmake()
    icon = _repo_file(cm["EXTENSION_ICONURL"])
    with Image.open(icon) as im:  # the Extensions Index asks for a 128x128 PNG
        assert im.format == "PNG" and im.size == (128, 128), (icon, im.format, im.size)
    shots = cm["EXTENSION_SCREENSHOTURLS"].split()
    assert shots
    for url in shots:
        path = _repo_file(url)
        assert path.is_file(), url
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) >= 200, (path, im.size)
