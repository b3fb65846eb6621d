"""C-STORE SCU towards the configured destination, fed by the outbox folders. A file is deleted only
after the destination accepted it, so the queue survives a restart; a failed attempt is retried with a
growing delay (kept in the folder, so a restart does not hammer a PACS that is down)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from OsteoAIBaseLib.errors import InputError

log = logging.getLogger("osteoai.node")
RETRY_DELAYS_S = (5, 15, 60, 300)  # then every 300 s, for as long as it takes


@dataclass
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AET@HOST:PORT``."""
        try:
            aet, rest = text.split("@", 1)
            host, port = rest.rsplit(":", 1)
            dest = cls(aet.strip(), host.strip(), int(port))
        except ValueError:
            raise InputError(f"--forward {text!r}: expected AET@HOST:PORT, e.g. PACS@10.0.0.5:104") from None
        if not 0 < len(dest.ae_title) <= 16 or not 0 < dest.port < 65536:
            raise InputError(f"--forward {text!r}: AE title of 1-16 characters and a port 1-65535 expected")
        return dest

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def send_files(files: list[Path], dest: Destination, calling_aet: str, on_sent=None) -> int:
    """Send ``files`` in one association; ``on_sent(path)`` after each accepted one. Returns how many were
    accepted; raises ConnectionError when no association could be made."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    headers = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in files]
    # Each object's own transfer syntax first, so it can be streamed from its file as it is.
    for sop_class, ts in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in headers}):
        ae.add_requested_context(sop_class, [ts])
    for sop_class in sorted({str(ds.SOPClassUID) for _, ds in headers}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"no association with {dest}")
    sent = 0
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    try:
        for p, ds in headers:
            if str(ds.SOPClassUID) not in accepted:
                # A permanent refusal (the destination does not store this kind of object) must not hold
                # back the rest of the queue: counted as done, and logged.
                log.warning("destination does not accept %s objects: %s left out", ds.get("Modality", "?"), p.name)
                sent += 1
                if on_sent:
                    on_sent(p)
                continue
            status = assoc.send_c_store(p)
            code = getattr(status, "Status", None)
            if code is None:
                raise ConnectionError(f"{dest} did not answer a C-STORE")
            if code in (0x0000, 0xB000, 0xB007, 0xB006):  # success or warning: the instance is stored
                sent += 1
                if on_sent:
                    on_sent(p)
            else:
                log.warning("destination refused %s: status 0x%04X", p.name, code)
    finally:
        assoc.release()
    return sent


class Forwarder:
    def __init__(self, work, dest: Destination, calling_aet: str):
        self.work, self.dest, self.calling_aet = work, dest, calling_aet

    def _state(self, box: Path) -> dict:
        try:
            return json.loads((box / ".attempts.json").read_text())
        except (OSError, ValueError):
            return {"attempts": 0, "next": 0.0}

    def _retry_later(self, job: str, box: Path, why: str) -> None:
        state = self._state(box)
        state["attempts"] += 1
        delay = RETRY_DELAYS_S[min(state["attempts"], len(RETRY_DELAYS_S)) - 1]
        state["next"] = time.time() + delay
        (box / ".attempts.json").write_text(json.dumps(state))
        log.warning(
            "job %s: forwarding to %s failed (%s); attempt %d, next in %d s",
            job,
            self.dest,
            why[:120],
            state["attempts"],
            delay,
        )

    def due(self) -> list[str]:
        now = time.time()
        return [job for job in self.work.outbox() if self._state(self.work.path("outbox", job))["next"] <= now]

    def forward(self, job: str) -> bool:
        """One attempt at the job's outbox; True when it is empty and gone."""
        box = self.work.path("outbox", job)
        files = sorted(p for p in box.glob("*.dcm"))
        # SEGs, then the SR that references them (its arrival is what a PACS user waits for), then the
        # key images, which nothing references.
        files.sort(key=lambda p: (not p.name.startswith("seg_"), p.name != "sr.dcm"))
        t0 = time.perf_counter()
        try:
            if files:
                send_files(files, self.dest, self.calling_aet, on_sent=lambda p: p.unlink())
            left = list(box.glob("*.dcm"))
            if left:  # refused with a failure status: maybe a full disk at the PACS, so later
                raise ConnectionError(f"{len(left)} of {len(files)} objects refused")
        except Exception as e:
            self._retry_later(job, box, str(e))
            return False
        res = self.work.path("results", job)
        if res.is_dir():
            (res / "forwarded.json").write_text(
                json.dumps({"to": str(self.dest), "files": len(files), "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            )
        self.work._remove(box)
        log.info(
            "job %s: %d DICOM objects forwarded to %s in %.1f s", job, len(files), self.dest, time.perf_counter() - t0
        )
        return True
