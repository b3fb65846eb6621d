"""An output folder holds one complete result or none: re-runs, a second run, a kill at any moment, a
full disk, a bad --out. 'Complete' is checkable: results.json lists every other file with its sha256."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from OsteoAIBaseLib.errors import OutputError
from OsteoAILib.cli import main as cli_main
from OsteoAILib.outputs import write_outputs
from support.outputs import make_output

HERE = Path(__file__).resolve().parent


def folder_state(d: Path) -> str | None:
    """The tag of the complete result in ``d``, None when there is none; fails on any mixture."""
    res_path = d / "results.json"
    visible = {
        p.relative_to(d).as_posix()
        for p in d.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts)
    }
    if not res_path.exists():
        return None
    res = json.loads(res_path.read_text())
    listed = set(res["files"]) | {"results.json"}
    assert visible == listed, f"files beside the result: {sorted(visible ^ listed)}"
    for rel, sha in res["files"].items():
        assert hashlib.sha256((d / rel).read_bytes()).hexdigest() == sha, f"{rel} is not the listed file"
    tag = res["input"]["tag"]
    assert all(tag in p for p in visible if p.startswith("key_images/")), "key images of another result"
    return tag


def test_a_rerun_replaces_the_whole_result(tmp_path):
    write_outputs(make_output("A", n_keys=4, radiomics=True), tmp_path)
    assert folder_state(tmp_path) == "A" and (tmp_path / "radiomics.csv").exists()
    (tmp_path / "notes.txt").write_text("the user's own file")  # not ours: never touched
    write_outputs(make_output("B", n_keys=2), tmp_path)
    assert not (tmp_path / "radiomics.csv").exists()
    assert sorted(p.name for p in (tmp_path / "key_images").iterdir()) == ["0_axial_B.png", "1_axial_B.png"]
    (tmp_path / "notes.txt").unlink()
    assert folder_state(tmp_path) == "B"
    assert not list(tmp_path.glob(".osteoai-staging-*"))


def test_a_folder_of_an_older_version_is_cleaned_by_name(tmp_path):
    for name in ("radiomics.csv", "scene.mrml", "key_images/9_axial_old.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("old")
    write_outputs(make_output("B"), tmp_path)
    assert folder_state(tmp_path) == "B"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: (t / "f").write_text("x") and t / "f", "the output path is a file, not a folder"),
        (lambda t: (t / "f").write_text("x") and t / "f" / "sub", "the output path lies below a file, not a folder"),
    ],
)
def test_a_bad_out_fails_before_any_work(tmp_path, capsys, make, message):
    # the input does not exist: the output error coming first shows the folder is checked before reading
    rc = cli_main(["run", str(tmp_path / "missing.nii.gz"), "--out", str(make(tmp_path)), "--quiet"])
    assert rc == 1 and _one_error_line(capsys) == f"osteoai run: error: {message}"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_fails_before_any_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc = cli_main(["run", str(tmp_path / "missing.nii.gz"), "--out", str(ro), "--quiet"])
    finally:
        ro.chmod(0o755)
    assert rc == 1 and _one_error_line(capsys) == (
        "osteoai run: error: cannot write into the output folder: permission denied (read-only or not writable)"
    )


def test_no_space_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    rc = cli_main(["run", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 1 and _one_error_line(capsys).startswith("osteoai run: error: only 1 MB free in the output folder")


def test_a_second_run_into_a_locked_folder_stops(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom OsteoAILib.output_folder import output_lock\n"
            f"with output_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = cli_main(["run", str(tmp_path / "missing.nii.gz"), "--out", str(out), "--quiet"])
        assert rc == 1 and _one_error_line(capsys) == (
            "osteoai run: error: another osteoai run is writing into this output folder; "
            "wait for it or choose another --out"
        )
        with pytest.raises(OutputError, match="another osteoai run"):
            write_outputs(make_output("B"), out)
    finally:
        holder.kill()
        holder.wait()
    write_outputs(make_output("B"), out)  # the lock dies with its holder
    assert folder_state(out) == "B"


def test_an_empty_write_is_caught_and_the_old_result_kept(tmp_path, monkeypatch):
    """ITK has renamed 0-byte labelmaps into place on a full disk: read-back catches it."""
    write_outputs(make_output("A"), tmp_path)
    import OsteoAIBaseLib.imageio as imageio

    monkeypatch.setattr(imageio.sitk, "WriteImage", lambda img, path, useCompression=True: Path(path).write_bytes(b""))
    with pytest.raises(OutputError, match=r"^cannot write the results: .*written empty"):
        write_outputs(make_output("B"), tmp_path)
    assert folder_state(tmp_path) == "A"
    assert not list(tmp_path.glob(".osteoai-staging-*"))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *sys.path])
    return env


def test_a_full_disk_keeps_the_old_result(tmp_path):
    """A real write failure: the file-size limit makes every write past 1.5 kB fail with EFBIG."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from support.outputs import make_output
        from OsteoAIBaseLib.errors import OutputError
        from OsteoAILib.outputs import write_outputs
        write_outputs(make_output("A"), {str(tmp_path)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, resource.RLIM_INFINITY))
        try:
            write_outputs(make_output("B", size=200), {str(tmp_path)!r})
        except OutputError as e:
            print("error:", e)
            sys.exit(3)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 3, p.stderr[-2000:]
    assert p.stdout.startswith("error: cannot write the results:")
    assert folder_state(tmp_path) == "A"


def test_a_kill_at_any_moment_leaves_one_result_or_none(tmp_path):
    """A writer alternating two results is killed at 6 moments; each time the folder is checked."""
    script = textwrap.dedent(f"""
        from support.outputs import make_output
        from OsteoAILib.outputs import write_outputs
        outs = [make_output("A", n_keys=4, radiomics=True, size=96), make_output("B", n_keys=2, size=96)]
        print("ready", flush=True)
        i = 0
        while True:
            write_outputs(outs[i % 2], {str(tmp_path)!r})
            i += 1
    """)
    seen = []
    rng = np.random.default_rng(1)
    for _ in range(6):
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=_env())
        assert p.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.5)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        seen.append(folder_state(tmp_path))  # asserts no mixture
    assert {"A", "B"} & set(seen), seen  # the writer did get results through
    write_outputs(make_output("A"), tmp_path)  # the next run cleans what a killed one left
    assert folder_state(tmp_path) == "A" and not list(tmp_path.glob(".osteoai-staging-*"))
