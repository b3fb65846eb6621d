"""The Storage SCP: every storage SOP class, every transfer syntax pynetdicom knows (compressed ones are
decoded later by the reader), and Verification for C-ECHO. An instance is acknowledged only once it is
on disk."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("osteoai.node")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


class Arrivals:
    """Per study: when its last instance came, and which associations are still sending it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.last: dict[str, float] = {}  # study key -> time.time() of the last instance
        self.open: dict[str, set[int]] = {}  # study key -> ids of associations that sent it and are open
        self.count: dict[str, int] = {}

    def arrived(self, key: str, assoc_id: int) -> None:
        with self._lock:
            self.last[key] = time.time()
            self.open.setdefault(key, set()).add(assoc_id)
            self.count[key] = self.count.get(key, 0) + 1

    def closed(self, assoc_id: int) -> None:
        with self._lock:
            for ids in self.open.values():
                ids.discard(assoc_id)

    def is_open(self, key: str) -> bool:
        with self._lock:
            return bool(self.open.get(key))

    def forget(self, key: str) -> int:
        with self._lock:
            self.last.pop(key, None)
            self.open.pop(key, None)
            return self.count.pop(key, 0)


def start_server(work, arrivals: Arrivals, ae_title: str, host: str, port: int):
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = 0  # no limit: fewer PDUs for 512x512 slices
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.network_timeout = ae.dimse_timeout = ae.acse_timeout = 120

    def on_store(event):
        try:
            # The request's Affected SOP Instance UID names the instance even when the dataset's is blank.
            sop = str(event.request.AffectedSOPInstanceUID or event.dataset.SOPInstanceUID)
            study = str(event.dataset.get("StudyInstanceUID", "") or "")
        except Exception as e:
            log.warning("refused an instance that cannot be read (%s)", type(e).__name__)
            return CANNOT_UNDERSTAND
        try:
            key = work.store(study, sop, event.encoded_dataset())
        except OSError as e:
            log.error("cannot store an instance: %s", e.strerror)
            return OUT_OF_RESOURCES
        arrivals.arrived(key, id(event.assoc))
        return SUCCESS

    def on_close(event):
        arrivals.closed(id(event.assoc))

    handlers = [
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_RELEASED, on_close),
        (evt.EVT_ABORTED, on_close),
        (evt.EVT_CONN_CLOSE, on_close),
    ]
    return ae.start_server((host, port), block=False, evt_handlers=handlers)
