"""The servers tests and benchmarks start for real, as subprocesses of the ``osteoai`` command: a free local
port, the DICOM node (``serve-dicom``) and the web app (``web``), each waited for until it answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dicom_node(work: Path, port: int, dest_port: int, log, timeout: float = 180.0) -> subprocess.Popen:
    """``osteoai serve-dicom`` forwarding to DEST on ``dest_port``, once it answers a C-ECHO; its output
    goes to ``log`` (an open file or ``subprocess.DEVNULL``). RuntimeError when it exits or stays mute."""
    from OsteoAILib.dicom_node.health import echo

    argv = ["serve-dicom", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--forward", f"DEST@127.0.0.1:{dest_port}", "--work", str(work)]
    p = _start(argv, log)
    _wait(p, lambda: echo("127.0.0.1", port, "OSTEOAI", timeout=2), "the DICOM node", timeout)
    return p


def start_web(data: Path, port: int, accounts: Path, log, cwd=None, timeout: float = 180.0) -> subprocess.Popen:
    """``osteoai web`` on ``data``, once its upload page answers; RuntimeError when it exits or stays mute."""
    argv = ["web", "--data", str(data), "--port", str(port), "--accounts", str(accounts), "--segmenter", "classical"]
    p = _start(argv, log, cwd)

    def answers() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/upload", timeout=2).status == 200
        except OSError:
            return False

    _wait(p, answers, "the web app", timeout)
    return p


def _start(argv: list[str], log, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "OsteoAILib.cli", *argv], stdout=log, stderr=subprocess.STDOUT, cwd=cwd
    )


def _wait(p: subprocess.Popen, answers, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not answers():
        if p.poll() is not None:
            raise RuntimeError(f"{what} exited at start")
        if time.monotonic() > deadline:
            p.kill()
            raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")
        time.sleep(0.3)
