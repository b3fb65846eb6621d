"""A batch stopped half-way (Ctrl-C, or the whole process group killed) keeps every finished study, and a resumed
run neither repeats nor loses one: its cohort table equals a clean run's, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from OsteoAILib.batch.command import run_batch
from OsteoAILib.batch.study import STUDY_FILE
from support.batch_helpers import OPTIONS, make_cohort

N = 6
CLI_OPTIONS = ["--segmenter", "classical", "--calibration", "internal", "--key-images", "1"]  # = OPTIONS


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    make_cohort(root / "tree", N)
    return root / "tree"


@pytest.fixture(scope="module")
def clean_table(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    assert run_batch([tree], out, OPTIONS, workers=2, quiet=True) == 0
    return (out / "cohort.csv").read_bytes()


def _published(out: Path) -> list[Path]:
    d = out / "studies"
    return [p for p in d.iterdir() if not p.name.startswith(".")] if d.is_dir() else []


def _ctrl_c_enabled() -> None:
    # a shell's background job (a CI step, `make test &`) starts with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the batch the Ctrl-C a terminal would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_stop_midway(tree: Path, out: Path, sig: int, tmp_path: Path) -> subprocess.Popen:
    with open(tmp_path / "batch.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "OsteoAILib.cli",
                "batch",
                str(tree),
                "--out",
                str(out),
                "--workers",
                "2",
                *CLI_OPTIONS,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job is
            preexec_fn=_ctrl_c_enabled,
        )
        deadline = time.monotonic() + 90
        while len(_published(out)) < N // 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the batch ended before it could be stopped half-way"
        os.killpg(proc.pid, sig)
        proc.wait(timeout=60)
    return proc


def _assert_published_are_complete(out: Path) -> dict[str, str]:
    run_ids = {}
    for d in _published(out):
        assert (d / "results.json").is_file() and (d / "vertebrae.nii.gz").is_file()
        run_ids[d.name] = json.loads((d / STUDY_FILE).read_text())["run_id"]
    return run_ids


def _resume_and_compare(tree: Path, out: Path, before: dict[str, str], clean_table: bytes) -> None:
    assert run_batch([tree], out, OPTIONS, workers=2, resume=True, quiet=True) == 0
    run = json.loads((out / "summary.json").read_text())["this_run"]
    assert run["skipped_complete"] == len(before) and run["screened"] == N - len(before)  # none repeated
    after = _assert_published_are_complete(out)
    assert len(after) == N  # none lost
    assert {k: after[k] for k in before} == before
    assert not list((out / "studies").glob(".partial-*"))
    assert (out / "cohort.csv").read_bytes() == clean_table


def test_ctrl_c_keeps_finished_studies_and_resume_completes(tree, clean_table, tmp_path):
    out = tmp_path / "out"
    proc = _start_and_stop_midway(tree, out, signal.SIGINT, tmp_path)
    assert proc.returncode == 130, (tmp_path / "batch.log").read_text()[-2000:]
    before = _assert_published_are_complete(out)
    assert N // 2 <= len(before) < N
    assert "--resume" in (tmp_path / "batch.log").read_text()
    assert len(set(before.values())) == 1
    _resume_and_compare(tree, out, before, clean_table)


def test_kill_at_half_way_loses_and_repeats_nothing(tree, clean_table, tmp_path):
    out = tmp_path / "out"
    proc = _start_and_stop_midway(tree, out, signal.SIGKILL, tmp_path)
    assert proc.returncode == -signal.SIGKILL
    before = _assert_published_are_complete(out)
    assert N // 2 <= len(before) < N
    _resume_and_compare(tree, out, before, clean_table)
