"""A minimal Storage SCP that keeps what it receives in a folder and notes when each instance came:
the destination in tests and benchmarks, and a stand-in for a PACS when trying the node."""

from __future__ import annotations

import threading
import time
from pathlib import Path


class Receiver:
    def __init__(
        self,
        folder: str | Path,
        port: int,
        ae_title: str = "DEST",
        host: str = "127.0.0.1",
        sop_classes: list[str] | None = None,
        status: int = 0x0000,
    ):
        self.sop_classes = sop_classes  # None: every storage SOP class
        self.status = status  # what every C-STORE is answered (e.g. 0xA700 plays a PACS with a full disk)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port, self.ae_title, self.host = port, ae_title, host
        self.received: list[dict] = []  # one per C-STORE: sop_class, sop_instance, study, series, at
        self._lock = threading.Lock()
        self._server = None

    def start(self) -> Receiver:
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        if self.sop_classes is None:
            ae.supported_contexts = AllStoragePresentationContexts
        for sop_class in self.sop_classes or []:
            ae.add_supported_context(sop_class)
        ae.add_supported_context(Verification)

        def on_store(event):
            if self.status != 0x0000:
                return self.status
            ds = event.dataset
            ds.file_meta = event.file_meta
            with self._lock:
                n = len(self.received)
                ds.save_as(self.folder / f"{n:05d}_{ds.Modality}.dcm", enforce_file_format=True)
                self.received.append(
                    {
                        "sop_class": str(ds.SOPClassUID),
                        "sop_instance": str(ds.SOPInstanceUID),
                        "study": str(ds.StudyInstanceUID),
                        "series": str(ds.SeriesInstanceUID),
                        "modality": str(ds.Modality),
                        "at": time.time(),
                        "path": self.folder / f"{n:05d}_{ds.Modality}.dcm",
                    }
                )
            return 0x0000

        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        return self

    def of_modality(self, modality: str) -> list[dict]:
        with self._lock:
            return [r for r in self.received if r["modality"] == modality]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
