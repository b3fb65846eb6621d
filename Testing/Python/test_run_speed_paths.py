"""The shortcuts that keep `osteoai run` within its time (issue 10: <= 15 s on 2 cores) change no result:
`auto` decides without importing torch, an already canonical volume is not copied, and the CLI's
allocator setting keeps large arrays off mmap (README speed rows; Testing/benchmarks/pipeline_speed.py)."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import SimpleITK as sitk
from OsteoAIBaseLib.imageio import from_canonical, to_canonical, volume_from_sitk, volume_to_sitk
from OsteoAIBaseLib.volume import Volume
from OsteoAISegmentLib import api


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_auto_choice_does_not_import_torch():
    out = _run(
        "import sys\n"
        "from OsteoAISegmentLib.api import choose_segmenter\n"
        "print(choose_segmenter('auto')[0], 'torch' in sys.modules)\n"
    )
    used, torch_imported = out.split()
    assert used in ("classical", "model")
    assert torch_imported == "False"


def test_auto_names_a_missing_torch_and_runs_classical(monkeypatch):
    from OsteoAISegmentLib.ai import inference

    monkeypatch.setattr(inference, "runtime_missing", lambda: "No module named 'torch'")
    used, why = api.choose_segmenter("auto")
    assert used == "classical"
    assert why == "auto -> classical: the vertebra model cannot be imported (No module named 'torch')"
    from OsteoAISegmentLib.segmenters import model_unavailable

    assert model_unavailable() == "the vertebra model cannot be imported (No module named 'torch')"


@pytest.mark.skipif(find_spec("torch") is None or find_spec("monai") is None, reason="torch/monai not installed")
def test_runtime_missing_is_none_where_torch_and_monai_are_installed():
    from OsteoAISegmentLib.ai.inference import runtime_missing

    assert runtime_missing() is None


def _dicom_orient(vol: Volume) -> Volume:
    """What to_canonical returned before its shortcut: the SimpleITK round trip."""
    can = volume_from_sitk(sitk.DICOMOrient(volume_to_sitk(vol), "LPS"), dict(vol.meta))
    can.meta["canonical_residual_deg"] = 0.0
    return can


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint8"])
def test_canonical_volume_is_shared_not_copied_and_equals_dicomorient(dtype):
    rng = np.random.default_rng(4)
    arr = rng.integers(0, 100, (6, 7, 8)).astype(dtype)
    vol = Volume(arr, (0.7, 0.8, 1.25), (-120.5, 30.25, -400.0), np.eye(3), {"kvp": 120.0})
    can, ref = to_canonical(vol), _dicom_orient(vol)
    assert np.shares_memory(can.array, arr)
    assert can.array.dtype == ref.array.dtype and np.array_equal(can.array, ref.array)
    assert can.spacing == ref.spacing and can.origin == ref.origin
    assert np.array_equal(can.direction, ref.direction)
    assert can.meta == ref.meta and vol.meta == {"kvp": 120.0}
    assert from_canonical(can.array, can, vol) is can.array


def test_a_non_contiguous_array_still_goes_through_simpleitk():
    """Not shared: SimpleITK makes it C-ordered, as before."""
    arr = np.arange(336, dtype=np.int16).reshape(8, 7, 6)[:, :, ::-1].transpose(2, 1, 0)
    vol = Volume(arr, (1.0, 1.0, 2.0))
    can = to_canonical(vol)
    assert not np.shares_memory(can.array, arr)
    assert np.array_equal(can.array, _dicom_orient(vol).array)


def test_a_flipped_volume_is_still_reoriented():
    arr = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    vol = Volume(arr, (0.7, 0.8, 1.25), (10.0, 20.0, 30.0), np.diag([1.0, -1.0, 1.0]))
    can = to_canonical(vol)
    assert np.array_equal(can.direction, np.eye(3))
    assert np.array_equal(can.array, arr[:, ::-1, :])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cli_keeps_large_arrays_off_mmap():
    """After the CLI's setting a 64 MB array comes from the heap (mallinfo2's hblkhd, the bytes held in
    mmapped blocks, does not grow), so its pages are reused by the next array instead of faulted in again."""
    code = (
        "import ctypes, numpy as np\n"
        "from OsteoAILib.cli import reuse_freed_memory\n"
        "class MI(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in\n"
        "        ('arena','ordblks','smblks','hblks','hblkhd','usmblks','fsmblks','uordblks','fordblks','keepcost')]\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "try:\n"
        "    mi = libc.mallinfo2\n"
        "except AttributeError:\n"
        "    print('skip'); raise SystemExit\n"
        "mi.restype = MI\n"
        "def mmapped(): return mi().hblkhd\n"
        "a = np.ones(64 * 2**20, np.uint8); before = mmapped() - a.nbytes; del a\n"
        "print(reuse_freed_memory(), end=' ')\n"
        "base = mmapped(); a = np.ones(64 * 2**20, np.uint8)\n"
        "print(before >= 0, mmapped() - base)\n"
    )
    out = _run(code)
    if out == "skip":
        pytest.skip("not glibc >= 2.33 (no mallinfo2)")
    ok, default_mmapped, grew = out.split()
    assert ok == "True" and default_mmapped == "True"  # by default the 64 MB array was an mmap of its own
    assert int(grew) == 0


@pytest.mark.parametrize("seed", range(6))
def test_roi_outliers_dropped_inside_the_core_box_as_on_the_body_box(seed):
    """roi._drop_outliers works on the core's box plus one voxel: the same core as the whole body box gives,
    the core touching the body box's faces or not."""
    from OsteoAILib.roi import _drop_outliers, _drop_outliers_in

    rng = np.random.default_rng(seed)
    arr = rng.normal(150, 40, (30, 34, 36)).astype(np.int16)
    hot = rng.random(arr.shape) < 0.01
    arr[hot] = 900  # cortex-bright specks for the second test
    sl = (slice(3, 27), slice(2, 30), slice(4, 33))
    core = np.zeros(tuple(s.stop - s.start for s in sl), bool)
    lo = rng.integers(0, 4, 3) if seed % 2 else np.zeros(3, int)  # even seeds: the core touches the box
    hi = np.array(core.shape) - (rng.integers(0, 4, 3) if seed % 3 else 0)
    core[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = rng.random(tuple(hi - lo)) < 0.9
    vol = Volume(arr, (0.7, 0.7, 1.25))
    got = _drop_outliers(vol, core, sl)
    assert np.array_equal(got, _drop_outliers_in(arr[sl], core))
    assert 0 < got.sum() < core.sum()


def test_only_one_shot_commands_change_the_allocator(monkeypatch, tmp_path, capsys):
    """`run` (and segment, demo) set it; a long-lived server (serve-dicom, web) keeps glibc's default."""
    from OsteoAILib import cli

    calls = []
    monkeypatch.setattr(cli, "reuse_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["run", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "out")]) == 1
    assert calls == [True]
    assert "input not found" in capsys.readouterr().err
    assert "serve-dicom" not in cli.ONE_SHOT and "web" not in cli.ONE_SHOT and "batch" not in cli.ONE_SHOT


def test_hull_of_the_label_boxes():
    """classical merges bodies into vertebrae inside the hull of their boxes only (zero outside both)."""
    from OsteoAISegmentLib.classical import _hull

    a = (slice(2, 10), slice(5, 7), slice(0, 4))
    b = (slice(4, 12), slice(1, 6), slice(3, 9))
    assert _hull(a, b) == (slice(2, 12), slice(1, 7), slice(0, 9))
    assert _hull(a, None) == a
    assert _hull(None, None) is None
