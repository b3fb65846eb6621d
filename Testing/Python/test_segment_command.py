"""`osteoai segment`: what the OsteoAISegment module runs in its background process. Labelmaps on the input's
own grid, the progress lines the module parses, Cancel through --cancel-file, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    pp = os.pathsep.join([str(REPO / "OsteoAI"), str(REPO / "OsteoAISegment"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "OsteoAILib.cli", "segment", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": pp})  # fmt: skip


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A small phantom written on a grid that is not the canonical one (flipped rows), as a user's file may be."""
    from OsteoAIBaseLib.imageio import write_volume
    from OsteoAIBaseLib.volume import Volume
    from OsteoAILib.phantom import PhantomParams, make_phantom

    ph = make_phantom(PhantomParams(seed=4, levels="T12-L2", matrix=96, spacing=(2.5, 2.5, 2.5)))
    v = ph.volume
    direction = v.direction.copy()
    direction[:, 1] *= -1  # j now runs anterior
    origin = v.origin + v.direction[:, 1] * v.spacing[1] * (v.shape[1] - 1)
    flipped = Volume(v.array[:, ::-1].copy(), v.spacing, origin, direction, dict(v.meta))
    path = tmp_path_factory.mktemp("ct") / "ct.nrrd"
    write_volume(flipped, path)
    return path, ph.vertebrae[:, ::-1]


def test_segment_writes_labels_on_the_input_grid(ct, tmp_path):
    import SimpleITK as sitk

    path, truth = ct
    r = _cli(path, "--out", tmp_path / "out", "--segmenter", "classical")
    assert r.returncode == 0, r.stderr
    assert "PROGRESS 100.0%" in r.stderr  # TerminalProgress lines, as BackgroundRun parses them
    out = tmp_path / "out"
    info = json.loads((out / "segmentation.json").read_text())
    assert info["segmenter"].startswith("classical") and info["info"]["segmenter_choice"] == "classical: requested"
    vert = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "vertebrae.nii.gz")))
    bodies = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "bodies.nii.gz")))
    assert vert.shape == truth.shape and sorted(set(np.unique(vert)) - {0}) == sorted(info["levels"])
    assert ((vert > 0) & (truth > 0)).sum() > 0.5 * (vert > 0).sum()  # on the input grid, not the canonical one
    assert (bodies > 0).sum() < (vert > 0).sum() and not ((bodies > 0) & (vert == 0)).any()


def test_segment_stops_at_the_cancel_file(ct, tmp_path):
    cancel = tmp_path / "cancel"
    cancel.touch()
    r = _cli(ct[0], "--out", tmp_path / "out", "--segmenter", "classical", "--cancel-file", cancel)
    assert r.returncode == 1 and "cancelled" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_segment_refuses_an_unknown_segmenter_in_one_line(ct, tmp_path):
    r = _cli(ct[0], "--out", tmp_path / "out", "--segmenter", "magic")
    assert r.returncode == 2 and "invalid choice: 'magic'" in r.stderr and "Traceback" not in r.stderr
