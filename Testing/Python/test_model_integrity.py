"""Model files are trusted only as far as the code's own pins: swapped weights with a rewritten card,
paths out of the model folder, pickle payloads and malformed cards are refused with one clear reason,
and under ``--vbmd auto`` a refused model is a QC flag, never a silent fallback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from OsteoAIBaseLib import model_registry
from OsteoAIBaseLib.volume import Volume
from OsteoAILib.results import Calibration
from OsteoAILib.vbmd_model import infer

ROOT = Path(__file__).resolve().parents[2]
VBMD = ROOT / "models" / "vbmd-mlp"
SEG = ROOT / "models" / "vertebra-seg"


def _copy(src: Path, dst: Path, files: list[str]) -> Path:
    dst.mkdir(parents=True)
    for f in files:
        shutil.copy(src / f, dst / f)
    return dst


def _card(folder: Path, **changes) -> dict:
    card = json.loads((folder / "model.json").read_text())
    card.update(changes)
    (folder / "model.json").write_text(json.dumps(card))
    return card


def test_every_shipped_model_matches_its_pin():
    for (name, version), files in model_registry.PINNED.items():
        card = json.loads((ROOT / "models" / name / "model.json").read_text())
        assert card["version"] == version
        for fname, sha in files.items():
            assert model_registry.sha256_file(ROOT / "models" / name / fname) == sha, f"{name}/{fname}"


def test_shipped_vbmd_model_loads_pinned_and_describes_its_files():
    m = infer.load_model(VBMD)
    pinned = model_registry.PINNED[("vbmd-mlp", infer.MODEL_VERSION)]["weights.npz"]
    assert m.pinned and m.describe() == {"files": {"weights.npz": pinned}, "pinned": True}


def test_swapped_weights_with_a_rewritten_card_are_refused(tmp_path):
    d = _copy(VBMD, tmp_path / "m", ["model.json", "weights.npz"])
    with np.load(d / "weights.npz") as z:
        w = {k: z[k] * 1.01 for k in z.files}
    np.savez(d / "weights.npz", **w)
    _card(d, weights_sha256=model_registry.sha256_file(d / "weights.npz"))  # the attacker rewrites the card too
    with pytest.raises(infer.ModelError, match=rf"is not the shipped vbmd-mlp@{re.escape(infer.MODEL_VERSION)}"):
        infer.load_model(d)


def test_an_unpinned_version_loads_as_unpinned_and_is_flagged(tmp_path, monkeypatch):
    d = _copy(VBMD, tmp_path / "m", ["model.json", "weights.npz"])
    _card(d, version="2.0-local")
    m = infer.load_model(d)
    assert not m.pinned
    problems: list[str] = []
    est, tag = infer.make_estimator(Volume(np.zeros((2, 2, 2))), Calibration("internal"), model=m, problems=problems)
    assert tag == "vbmd-mlp@2.0-local"
    assert problems and problems[0].startswith("vbmd_model_unpinned: vbmd-mlp@2.0-local is not a shipped model")


@pytest.mark.parametrize("name", ["../weights.npz", "/etc/passwd", "sub/weights.npz", "..", "", 7])
def test_weights_outside_the_model_folder_are_refused(tmp_path, name):
    d = _copy(VBMD, tmp_path / "m", ["model.json", "weights.npz"])
    _card(d, weights_file=name)
    with pytest.raises(infer.ModelError):
        infer.load_model(d)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    d = _copy(VBMD, tmp_path / "m", ["model.json"])
    shutil.copy(VBMD / "weights.npz", tmp_path / "outside.npz")
    (d / "weights.npz").symlink_to(tmp_path / "outside.npz")
    with pytest.raises(infer.ModelError, match="points outside the model folder"):
        infer.load_model(d)


def test_a_pickle_payload_is_never_loaded(tmp_path):
    d = _copy(VBMD, tmp_path / "m", ["model.json"])
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    np.savez(d / "weights.npz", **{"l0.weight": np.array([Payload()], dtype=object)})
    _card(d, version="9.9", weights_sha256=model_registry.sha256_file(d / "weights.npz"))
    with pytest.raises(infer.ModelError, match="cannot be read safely"):
        infer.load_model(d)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "unreadable"),
        ("[1, 2]", "not a JSON object"),
        (None, "incomplete: 'interval_k'"),
        ("normalisation", "malformed: normalisation"),
    ],
)
def test_malformed_or_incomplete_cards_are_refused(tmp_path, text, message):
    d = _copy(VBMD, tmp_path / "m", ["model.json", "weights.npz"])
    if text is None:
        card = json.loads((d / "model.json").read_text())
        del card["interval_k"]
        (d / "model.json").write_text(json.dumps(card))
    elif text == "normalisation":
        _card(d, normalisation={"mean": [0.0], "std": [1.0]})
    else:
        (d / "model.json").write_text(text)
    with pytest.raises(infer.ModelError, match=message):
        infer.load_model(d)


def test_a_corrupted_model_under_auto_is_a_qc_flag(tmp_path, monkeypatch):
    from OsteoAILib.remeasure import make_estimator

    d = _copy(VBMD, tmp_path / "m", ["model.json", "weights.npz"])
    data = bytearray((d / "weights.npz").read_bytes())
    data[-100] ^= 0xFF
    (d / "weights.npz").write_bytes(bytes(data))
    monkeypatch.setenv(infer.ENV_VAR, str(d))
    problems: list[str] = []
    est, tag = make_estimator("auto", Volume(np.zeros((2, 2, 2))), Calibration("internal"), problems)
    assert est is None and tag is None
    assert len(problems) == 1 and problems[0].startswith(
        "vbmd_model_unavailable: vbmd-mlp not used (vBMD model weights are altered: weights.npz is not the shipped"
    )
    with pytest.raises(infer.ModelError):
        make_estimator("ai", Volume(np.zeros((2, 2, 2))), Calibration("internal"), [])


# --------------------------------------------------------------------------------------- segmenter model


@pytest.fixture()
def seg_dir(tmp_path, monkeypatch):
    d = _copy(SEG, tmp_path / "models" / "vertebra-seg", ["model.json", "model.pt"])
    monkeypatch.setenv("OSTEOAI_MODELS", str(tmp_path / "models"))
    return d


def test_shipped_segmenter_weights_pass(seg_dir):
    from OsteoAISegmentLib.ai import inference

    card, w = inference.check_weights()
    assert card["_pinned"] and card["sha256"] == model_registry.PINNED[("vertebra-seg", "1.0")]["model.pt"]


def test_segmenter_weights_swapped_with_a_rewritten_card_are_refused(seg_dir):
    from OsteoAISegmentLib.ai import inference

    data = bytearray((seg_dir / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (seg_dir / "model.pt").write_bytes(bytes(data))
    _card(seg_dir, sha256=model_registry.sha256_file(seg_dir / "model.pt"))
    with pytest.raises(inference.ModelUnavailable, match=r"not the shipped vertebra-seg@1\.0"):
        inference.check_weights()
    assert not inference.model_available()


@pytest.mark.parametrize("change", [{"weights": "../../../etc/passwd"}, {"weights": None}, "drop:network"])
def test_segmenter_card_paths_and_fields_are_checked(seg_dir, change):
    from OsteoAISegmentLib.ai import inference

    if change == "drop:network":
        card = json.loads((seg_dir / "model.json").read_text())
        del card["network"]
        (seg_dir / "model.json").write_text(json.dumps(card))
    else:
        _card(seg_dir, **change)
    with pytest.raises(inference.ModelUnavailable):
        inference.check_weights()


def test_segmenter_pickle_payload_is_never_executed(seg_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from OsteoAISegmentLib.ai import inference

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"x": Payload()}, seg_dir / "model.pt")
    _card(seg_dir, version="9.9", sha256=model_registry.sha256_file(seg_dir / "model.pt"))
    with pytest.raises(inference.ModelUnavailable, match="cannot be loaded safely"):
        inference.load_model("cpu", seg_dir)
    assert not marker.exists()
