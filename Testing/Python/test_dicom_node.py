"""`osteoai serve-dicom` for real (issue 15): a node started here on a loopback port receives a phantom CT from
a real DICOM client (dcmtk storescu, else pynetdicom's), screens it, and forwards SEG/SR/key images to a
second node. The destination is down at first and the node is killed (SIGKILL) with its outbox full: after
a restart everything arrives once. A study that is not CT is set aside with a reason, and the node goes on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")

from support.dicom_helpers import write_series
from support.dicom_out import dciodvfy_errors, small_phantom_dicom
from support.servers import free_port, start_dicom_node

TIMEOUT_S = 180


def send(folder: Path, port: int) -> None:
    """A real DICOM client, in its own process: dcmtk's storescu when installed, else pynetdicom's."""
    if shutil.which("storescu"):
        cmd = ["storescu", "-aec", "OSTEOAI", "+sd", "+r", "127.0.0.1", str(port), str(folder)]
    else:
        cmd = [
            sys.executable,
            "-m",
            "pynetdicom",
            "storescu",
            "-aec",
            "OSTEOAI",
            "-r",
            "127.0.0.1",
            str(port),
            str(folder),
        ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def wait_for(condition, what: str, timeout: float = TIMEOUT_S):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc; [] elsewhere)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_node(work: Path, port: int, dest_port: int) -> subprocess.Popen:
    log = open(work.parent / f"node-{time.time_ns()}.out", "w")  # noqa: SIM115 - closed with the process
    return start_dicom_node(work, port, dest_port, log, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def node_run(tmp_path_factory):
    from OsteoAILib.dicom_node.receiver import Receiver

    root = tmp_path_factory.mktemp("node")
    ct = small_phantom_dicom(root / "phantom", seed=7)
    mr = write_series(root / "mr", n=12, modality="MR")
    work, port, dest_port = root / "work", free_port(), free_port()
    facts: dict = {"root": root, "work": work}
    node = start_node(work, port, dest_port)
    try:
        send(ct, port)
        # Screened, but the destination is down: the objects wait in the outbox. Then the node dies.
        wait_for(lambda: list((work / "outbox").glob("[!.]*/.attempts.json")), "a failed forwarding attempt")
        facts["workers"] = children(node.pid)
        node.send_signal(signal.SIGKILL)
        node.wait(30)
        receiver = Receiver(root / "dest", dest_port).start()
        node = start_node(work, port, dest_port)
        wait_for(lambda: receiver.of_modality("SR"), "the SR at the destination")
        send(mr, port)
        wait_for(lambda: list((work / "failed").glob("*/reason.txt")), "the MR study to be set aside")
        health = subprocess.run(
            [
                sys.executable,
                "-m",
                "OsteoAILib.cli",
                "serve-dicom",
                "--health",
                "--port",
                str(port),
                "--work",
                str(work),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        facts.update(ct=ct, received=list(receiver.received), health=health)
        time.sleep(1.0)  # nothing more may arrive
        facts["received_late"] = list(receiver.received)
        receiver.stop()
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
    return facts


def test_node_forwards_seg_sr_and_key_images_once_despite_a_kill(node_run):
    import pydicom

    got = node_run["received_late"]
    by_modality = {m: [r for r in got if r["modality"] == m] for m in ("SEG", "SR", "OT")}
    results = [json.loads(p.read_text()) for p in (node_run["work"] / "results").glob("*/results.json")]
    assert len(results) == 1
    assert len(by_modality["SR"]) == 1 and len(by_modality["SEG"]) == 2
    assert len(by_modality["OT"]) == len(results[0]["key_images"])
    assert len(got) == len({r["sop_instance"] for r in got})  # none twice
    study = pydicom.dcmread(sorted(node_run["ct"].glob("*.dcm"))[0], stop_before_pixels=True).StudyInstanceUID
    assert {r["study"] for r in got} == {study}
    assert not list((node_run["work"] / "outbox").iterdir())


def test_forwarded_sr_gives_back_every_number_of_results_json(node_run):
    from OsteoAILib.dicom_out.read_back import compare, read_sr

    sr = [r for r in node_run["received_late"] if r["modality"] == "SR"][0]
    results = json.loads(next((node_run["work"] / "results").glob("*/results.json")).read_text())
    assert compare(results, read_sr(sr["path"])) == []


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) not installed")
def test_forwarded_objects_have_no_dciodvfy_error(node_run):
    for r in node_run["received_late"]:
        assert dciodvfy_errors(r["path"]) == [], r["modality"]


def test_a_study_that_is_not_ct_is_set_aside_and_the_node_keeps_serving(node_run):
    reasons = [p.read_text() for p in (node_run["work"] / "failed").glob("*/reason.txt")]
    assert len(reasons) == 1 and "no CT series" in reasons[0]
    assert node_run["health"].returncode == 0, node_run["health"].stdout + node_run["health"].stderr
    assert "ok" in node_run["health"].stdout and "failed 1" in node_run["health"].stdout


def test_the_node_log_holds_no_patient_identity(node_run):
    import pydicom

    ds = pydicom.dcmread(sorted(node_run["ct"].glob("*.dcm"))[0], stop_before_pixels=True)
    text = (node_run["work"] / "node.log").read_text()
    text += "".join(p.read_text() for p in node_run["root"].glob("node-*.out"))
    assert "screened in" in text and "forwarded" in text and "not screened" in text
    for secret in (str(ds.PatientName), str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)):
        assert secret not in text
    assert os.path.getsize(node_run["work"] / "status.json") > 0


def test_a_destination_that_refuses_an_object_type_does_not_block_the_rest(node_run, tmp_path):
    from OsteoAILib.dicom_node.forward import Destination, send_files
    from OsteoAILib.dicom_node.receiver import Receiver
    from pydicom.uid import Comprehensive3DSRStorage

    dicom = next((node_run["work"] / "results").glob("*/dicom"))
    files = []
    for name in ("seg_vertebrae.dcm", "sr.dcm"):
        shutil.copy(dicom / name, tmp_path / name)
        files.append(tmp_path / name)
    receiver = Receiver(tmp_path / "dest", free_port(), sop_classes=[Comprehensive3DSRStorage]).start()
    done = []
    try:
        assert send_files(files, Destination("DEST", "127.0.0.1", receiver.port), "OSTEOAI", on_sent=done.append) == 2
    finally:
        receiver.stop()
    assert done == files and [r["modality"] for r in receiver.received] == ["SR"]


def test_the_worker_of_a_killed_node_does_not_outlive_it(node_run):
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    assert node_run["workers"], "the node had no worker process"
    wait_for(lambda: not any(alive(p) for p in node_run["workers"]), "the orphaned worker to exit", timeout=30)


def test_a_refusing_destination_is_retried_later_not_hammered(tmp_path):
    from OsteoAILib.dicom_node.forward import Destination, Forwarder
    from OsteoAILib.dicom_node.receiver import Receiver
    from OsteoAILib.dicom_node.workdir import WorkDir

    work = WorkDir(tmp_path / "work")
    ct = sorted(write_series(tmp_path / "ct", n=2).glob("*.dcm"))
    box = work.path("outbox", "job1")
    box.mkdir()
    shutil.copy(ct[0], box / "sr.dcm")
    receiver = Receiver(tmp_path / "dest", free_port(), status=0xA700).start()  # out of resources
    try:
        fw = Forwarder(work, Destination("DEST", "127.0.0.1", receiver.port), "OSTEOAI")
        t0 = time.time()
        assert fw.forward("job1") is False
    finally:
        receiver.stop()
    state = json.loads((box / ".attempts.json").read_text())
    assert state["attempts"] == 1 and state["next"] >= t0 + 4
    assert fw.due() == [] and (box / "sr.dcm").exists()
