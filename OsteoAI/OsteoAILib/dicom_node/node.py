"""The node's main loop: decide which studies are complete, screen them one at a time, forward the
results, keep status.json current. Bad studies are logged with their reason and set aside."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .forward import Destination, Forwarder
from .scp import Arrivals, start_server
from .screening import Screener
from .workdir import WorkDir

log = logging.getLogger("osteoai.node")


@dataclass
class NodeConfig:
    work: str
    port: int
    forward: Destination
    ae_title: str = "OSTEOAI"
    host: str = "0.0.0.0"
    quiet_s: float = 10.0  # a study is complete after this long without a new instance...
    quiet_after_release_s: float = 2.0  # ...or this long once every association that sent it has closed
    pipeline_options: dict = field(default_factory=dict)


class Node:
    def __init__(self, cfg: NodeConfig):
        self.cfg = cfg
        self.work = WorkDir(cfg.work)
        self.work.recover()
        self.arrivals = Arrivals()
        self.stop_event = threading.Event()
        self.screened = self.failed = self.forwarded = 0
        self.started = time.time()
        self.last_error = ""

    def complete_studies(self) -> list[str]:
        now = time.time()
        done = []
        for key, mtime in self.work.incoming().items():
            last = max(mtime, self.arrivals.last.get(key, 0.0))
            quiet = self.cfg.quiet_s if self.arrivals.is_open(key) else self.cfg.quiet_after_release_s
            if key not in self.arrivals.last:  # found on disk after a restart: no association knowledge
                quiet = self.cfg.quiet_s
            if now - last >= quiet:
                done.append(key)
        return done

    def _screen(self, screener: Screener, job: str) -> None:
        job_dir = self.work.path("jobs", job)
        n = sum(1 for _ in (job_dir / "input").iterdir())
        log.info("job %s: screening %d instances", job, n)
        t0 = time.perf_counter()
        out_dir = job_dir / "out"
        try:
            summary = screener.screen(job_dir / "input", out_dir)
        except Exception as e:
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            self.work.fail_job(job, reason)
            self.failed += 1
            self.last_error = reason
            log.warning("job %s: not screened: %s", job, reason)
            return
        files = [out_dir / "dicom" / Path(p).name for p in summary["files"]]
        self.work.finish_job(job, out_dir, files)
        self.screened += 1
        log.info(
            "job %s: screened in %.1f s (%d levels, category %s); %d DICOM objects queued",
            job,
            time.perf_counter() - t0,
            summary["levels"],
            summary["category"] or "none",
            len(files),
        )
        try:  # labelmaps, .seg.nrrd, PNGs: while the forwarder sends
            screener.write_rest(self.work.path("results", job))
        except Exception as e:
            log.warning("job %s: the other output files were not written: %s", job, str(e)[:200])

    def _status(self) -> None:
        self.work.write_status(
            {
                "ae_title": self.cfg.ae_title,
                "port": self.cfg.port,
                "forward": str(self.cfg.forward),
                "started": self.started,
                "now": time.time(),
                "queues": self.work.counts(),
                "screened": self.screened,
                "failed": self.failed,
                "forwarded": self.forwarded,
                "last_error": self.last_error,
            }
        )

    def _forward_loop(self, forwarder: Forwarder) -> None:
        while not self.stop_event.is_set():
            for job in forwarder.due():
                if forwarder.forward(job):
                    self.forwarded += 1
            self.stop_event.wait(0.2)

    def serve(self) -> None:
        screener = Screener(self.cfg.pipeline_options)
        server = start_server(self.work, self.arrivals, self.cfg.ae_title, self.cfg.host, self.cfg.port)
        forwarder = Forwarder(self.work, self.cfg.forward, self.cfg.ae_title)
        sender = threading.Thread(target=self._forward_loop, args=(forwarder,), name="forward", daemon=True)
        sender.start()
        log.info("listening as %s on port %d; forwarding to %s", self.cfg.ae_title, self.cfg.port, self.cfg.forward)
        try:
            while not self.stop_event.is_set():
                for key in self.complete_studies():
                    n = self.arrivals.forget(key)
                    job = self.work.start_job(key)
                    if job:
                        log.info("study %s complete (%s new instances): job %s", key, n or "?", job)
                for job in self.work.pending_jobs():
                    if self.stop_event.is_set():
                        break
                    self._screen(screener, job)
                    self._status()
                self._status()
                self.stop_event.wait(0.2)
        finally:
            server.shutdown()
            self.stop_event.set()
            sender.join(timeout=10)
            screener.close()
            log.info("stopped")
