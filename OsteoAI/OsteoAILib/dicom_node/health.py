"""``osteoai serve-dicom --health``: a C-ECHO to the node, plus its queues from status.json when the work
folder is given. Exit 0 when the node answers."""

from __future__ import annotations

import json
import time
from pathlib import Path


def echo(host: str, port: int, called_aet: str, calling_aet: str = "OSTEOAI-HEALTH", timeout: float = 10) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=calling_aet)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return getattr(status, "Status", None) == 0x0000
    finally:
        assoc.release()


def health(host: str, port: int, ae_title: str, work: str | None) -> tuple[bool, str]:
    ok = echo(host, port, ae_title)
    line = f"C-ECHO {ae_title}@{host}:{port}: {'ok' if ok else 'no answer'}"
    if work:
        try:
            s = json.loads((Path(work) / "status.json").read_text())
            q = s["queues"]
            line += (
                f"; waiting {q['incoming']}, screening {q['jobs']}, to forward {q['outbox']}, "
                f"failed {q['failed']}; screened {s['screened']}, forwarded {s['forwarded']} since start "
                f"{time.time() - s['started']:.0f} s ago (status {time.time() - s['now']:.0f} s old)"
            )
            if s.get("last_error"):
                line += f"; last error: {s['last_error']}"
        except (OSError, ValueError, KeyError):
            line += "; no status.json in the work folder"
    return ok, line
