"""The sha256 of every shipped model file, pinned in the code.

A model folder's own ``model.json`` also records a sha256, but whoever can swap the weights can rewrite
that card too. So a model whose card claims a shipped name and version loads only when its files have
the hashes pinned here; any other version loads as *unpinned* (results say so and carry its hashes).

Retraining a shipped model: give it a new version, run the tests, then pin the new files here
(``sha256sum models/<name>/<file>``) in the same commit as the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PINNED: dict[tuple[str, str], dict[str, str]] = {
    ("vbmd-mlp", "3.1"): {"weights.npz": "55f4d9e5cc418a19f969db03ad71a703785e3389074360687c38de017174e1ec"},
    ("vertebra-seg", "1.0"): {"model.pt": "44fa796adad749db14db310efd6bcc74d300e03246a3ef0b55891a86aad2a0ce"},
}


# Where the shipped models are, without any environment variable: ``models/`` of a source checkout, else
# ``OsteoAIBaseLib/models/`` of an installed copy (the wheel's package data, the Slicer extension's CMake install).
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
PACKAGED_MODELS = Path(__file__).resolve().parent / "models"


def shipped_dir(name: str) -> Path:
    """The folder of the shipped model ``name`` (it may be missing: the loaders say so clearly)."""
    repo = REPO_MODELS / name
    return repo if repo.is_dir() or not (PACKAGED_MODELS / name).is_dir() else PACKAGED_MODELS / name


class IntegrityError(ValueError):
    """A model file is outside its folder, or differs from the file shipped under that name and version."""


class CardError(ValueError):
    """A model folder's card (model.json) is missing, unreadable or not a JSON object."""


def read_card(folder: Path) -> dict:
    """The model card ``folder/model.json``; CardError saying what is wrong with it. Each loader then
    checks the fields its own model needs."""
    card = Path(folder) / "model.json"
    if not card.is_file():
        raise CardError(f"{card} is missing")
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CardError(f"{card} is unreadable: {str(e)[:120]}") from None
    if not isinstance(data, dict):
        raise CardError(f"{card} is not a JSON object")
    return data


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def confined(folder: Path, name) -> Path:
    """``folder/name`` for a plain file name from a model card; IntegrityError for anything that could
    reach outside the folder ('../..', an absolute path, a link out)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise IntegrityError(f"weights file name {name!r} is not a plain file name inside the model folder")
    path = folder / name
    try:
        if not path.resolve().is_relative_to(folder.resolve()):
            raise IntegrityError(f"weights file {name!r} points outside the model folder")
    except OSError as e:
        raise IntegrityError(f"weights file {name!r} cannot be resolved: {e.strerror}") from None
    return path


def check(name: str, version: str, path: Path, card_sha256: str | None) -> tuple[str, bool]:
    """(sha256 of ``path``, pinned?). IntegrityError when it matches neither its pin nor its own card."""
    digest = sha256_file(path)
    pins = PINNED.get((str(name), str(version)))
    if pins is not None:
        want = pins.get(path.name)
        if want is None or digest != want:
            raise IntegrityError(
                f"{path.name} is not the shipped {name}@{version} (sha256 {digest[:12]}..., pinned "
                f"{(want or 'none')[:12]}...): altered, or retrained without a new version"
            )
        return digest, True
    if digest != card_sha256:
        raise IntegrityError(
            f"{path.name} is altered or corrupt: sha256 {digest[:12]}... does not match its "
            f"model.json ({str(card_sha256)[:12]}...)"
        )
    return digest, False
