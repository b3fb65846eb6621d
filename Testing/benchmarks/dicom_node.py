"""The DICOM node (`osteoai serve-dicom`, issue 15) under load. Prints:

1. latency: from the last instance of a study received (its C-STORE answered) to the SR arriving at the
   destination, for the default 300-slice phantom as a DICOM series (target <= 30 s on 2 cores);
2. 20 studies sent back to back (new UIDs each): how many results arrived, and whether any twice;
3. the same with the node killed (SIGKILL) halfway and started again: none lost, none twice.

Run: .venv/bin/python Testing/benchmarks/dicom_node.py [--studies 20] [--latency-runs 2] [--batch-size small|default]
The batch runs use a small phantom (T11-L2, 128x128) unless --batch-size default: 40 default phantoms take
~15 min on 2 cores and are not what they measure (queueing, completeness, retries).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Python"))
from support.servers import free_port, start_dicom_node

AET = "OSTEOAI"


def phantom_datasets(folder: Path, small: bool) -> list:
    import pydicom
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    params = PhantomParams(seed=11, levels="T11-L2", matrix=128, spacing=(1.5, 1.5, 2.0)) if small else PhantomParams()
    t0 = time.perf_counter()
    ph = make_phantom(params)
    write_phantom(ph, folder, dicom=True)
    files = sorted((folder / "dicom").glob("*.dcm"))
    print(
        f"phantom {'small' if small else 'default'}: {ph.volume.shape} voxels, {len(files)} slices "
        f"(built in {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    return [pydicom.dcmread(p) for p in files]


def as_new_study(datasets: list, n: int, tag: str) -> str:
    """The same images under new study/series/instance UIDs: the node must see another patient's study."""
    from pydicom.uid import generate_uid

    study = generate_uid(entropy_srcs=[tag, str(n), "study"])
    series = generate_uid(entropy_srcs=[tag, str(n), "series"])
    frame = generate_uid(entropy_srcs=[tag, str(n), "frame"])
    for k, ds in enumerate(datasets):
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[tag, str(n), str(k)])
    return study


def send(datasets: list, port: int) -> float:
    """One association, every instance; returns the time the last C-STORE was answered."""
    from pynetdicom import AE

    ae = AE(ae_title="BENCH")
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate("127.0.0.1", port, ae_title=AET)
    if not assoc.is_established:
        raise ConnectionError("node not reachable")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if getattr(status, "Status", None) != 0:
                raise ConnectionError("C-STORE failed")
        return time.time()
    finally:
        if assoc.is_established:
            assoc.release()


def start_node(work: Path, port: int, dest_port: int) -> subprocess.Popen:
    p = start_dicom_node(work, port, dest_port, subprocess.DEVNULL)
    time.sleep(10)  # let the worker warm up (imports), as a node that has been running would be
    return p


def wait_srs(receiver, studies: set[str], timeout: float) -> dict[str, int]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = [r["study"] for r in receiver.of_modality("SR") if r["study"] in studies]
        if set(got) >= studies:
            break
        time.sleep(0.5)
    time.sleep(2)  # a duplicate would come right behind
    counts: dict[str, int] = {}
    for r in receiver.of_modality("SR"):
        if r["study"] in studies:
            counts[r["study"]] = counts.get(r["study"], 0) + 1
    return counts


def report(name: str, counts: dict[str, int], n: int) -> bool:
    twice = sum(1 for c in counts.values() if c > 1)
    print(f"{name}: {len(counts)}/{n} results arrived, {twice} more than once", flush=True)
    return len(counts) == n and twice == 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--latency-runs", type=int, default=2)
    ap.add_argument("--batch-size", choices=["small", "default"], default="small")
    args = ap.parse_args()
    from OsteoAILib.dicom_node.receiver import Receiver

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        port, dest_port = free_port(), free_port()
        receiver = Receiver(tmp / "dest", dest_port).start()
        node = start_node(tmp / "work", port, dest_port)
        try:
            if args.latency_runs:
                big = phantom_datasets(tmp / "default", small=False)
                for run in range(args.latency_runs):
                    study = as_new_study(big, run, "latency")
                    t_sent0 = time.time()
                    t_last = send(big, port)
                    counts = wait_srs(receiver, {study}, timeout=600)
                    sr_at = [r["at"] for r in receiver.of_modality("SR") if r["study"] == study]
                    print(
                        f"latency run {run + 1}: sent {len(big)} instances in {t_last - t_sent0:.1f} s; last instance"
                        f" -> SR at destination {sr_at[0] - t_last:.1f} s"
                        if sr_at
                        else "latency: no SR",
                        flush=True,
                    )
                    ok &= bool(counts)
                del big
            if not args.studies:
                return 0 if ok else 1
            batch = phantom_datasets(tmp / "batch", small=args.batch_size == "small")
            studies = set()
            for i in range(args.studies):
                studies.add(as_new_study(batch, i, "batch"))
                send(batch, port)
            ok &= report(
                f"{args.studies} studies back to back", wait_srs(receiver, studies, 60 * args.studies), args.studies
            )

            # Kill and restart: a sender that resends a study whose association broke, as a scanner does.
            studies, killed = set(), threading.Event()

            def killer():
                nonlocal node
                while len(studies) < args.studies // 2:
                    time.sleep(0.05)
                node.send_signal(signal.SIGKILL)
                node.wait()
                print(f"node killed (SIGKILL) after {len(studies)} studies sent; restarting", flush=True)
                node = start_node(tmp / "work", port, dest_port)
                killed.set()

            k = threading.Thread(target=killer)
            k.start()
            for i in range(args.studies):
                study = as_new_study(batch, i, "restart")
                while True:
                    try:
                        send(batch, port)
                        break
                    except Exception:
                        time.sleep(1)
                studies.add(study)
            k.join()
            ok &= report(
                "with a kill and restart halfway", wait_srs(receiver, studies, 60 * args.studies), args.studies
            )
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(60)
            receiver.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
