"""Terminal progress: a bar on a terminal, one line per message otherwise (logs, CI, Slicer's subprocess);
and the other half of that protocol, stopping a background job (``kill_process_tree``)."""

from __future__ import annotations

import logging
import sys
import time

from OsteoAIBaseLib.errors import printable


class TerminalProgress:
    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last_msg = None

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        message = printable(message)  # one line, no escape sequences, whatever a stage reports
        elapsed = time.perf_counter() - self.t0
        if self.tty:
            n = int(30 * fraction)
            bar = "#" * n + "." * (30 - n)
            self.stream.write(f"\r[{bar}] {fraction * 100:5.1f}% {elapsed:5.1f}s {message[:50]:<50}")
            if fraction >= 1.0:
                self.stream.write("\n")
        elif message != self.last_msg:
            # "PROGRESS <pct> <msg>" is parsed by the Slicer module's background runner.
            self.stream.write(f"PROGRESS {fraction * 100:5.1f}% {elapsed:6.1f}s {message}\n")
        self.last_msg = message
        self.stream.flush()


def kill_process_tree(pid: int, timeout: float = 5.0) -> None:
    """Kill ``pid`` and every process below it, then wait until they are gone.

    Slicer's ``PythonSlicer`` is a launcher that runs the real interpreter as a child: killing only the
    launcher leaves the work running. Uses psutil (as SlicerMONAIAuto3DSeg does); without it only ``pid``
    itself can be stopped, by the caller.
    """
    if not pid or pid <= 0:
        return
    try:
        import psutil
    except ImportError:
        logging.warning("psutil is not installed: only the launcher process is stopped")
        return
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for proc in procs:  # children first: none is left to start more work
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    # Wait until each has ended. A zombie has ended (it only waits for its parent, or init, to reap it);
    # psutil.wait_procs would wait for the reaping too, which an orphan gets only when init gets to it.
    deadline = time.monotonic() + timeout
    for proc in procs:
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.005)
