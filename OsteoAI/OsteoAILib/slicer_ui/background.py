"""One background run for both modules: ``PythonSlicer -m OsteoAILib.cli <command> ...`` with progress.

The protocol is the command line's own: ``osteoai run`` and ``osteoai segment`` print
``PROGRESS <pct>% <seconds>s <message>`` lines (:class:`OsteoAILib.commands.progress.TerminalProgress`)
and stop at their next stage boundary once the ``--cancel-file`` exists; Cancel also kills the whole
process tree (``PythonSlicer`` is a launcher that starts the real interpreter as a child).
"""

import logging
import os
import re
import shutil
import sys
import tempfile

import qt
import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

PROGRESS_LINE = re.compile(r"^PROGRESS\s+([\d.]+)%\s+[\d.]+s\s?(.*)$")
CANCEL_FILE = "cancel"  # in the run's work folder


def parseProgress(line):
    """``(fraction, message)`` from a ``PROGRESS  42.0%   3.1s msg`` line, else None."""
    m = PROGRESS_LINE.match(line.strip())
    return (float(m.group(1)) / 100.0, m.group(2)) if m else None


def libraryPaths():
    """Folders that hold the extension's Libs (OsteoAILib, OsteoAISegmentLib, OsteoAIBaseLib)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds OsteoAILib
    paths = [here]
    for name in ("osteoaisegment", "osteoai"):
        module = getattr(getattr(slicer, "modules", None), name, None)
        if module is not None and getattr(module, "path", None):
            paths.append(os.path.dirname(module.path))
    paths.append(os.path.join(os.path.dirname(here), "OsteoAISegment"))  # source tree layout
    return [p for p in dict.fromkeys(paths) if os.path.isdir(p)]


def writeInput(volumeNode, path):
    """Write the volume (any linear parent transform applied) for the background process.

    Not slicer.util.saveNode: that would point the node's storage at a temporary file.
    """
    from OsteoAIBaseLib.imageio import write_volume

    import OsteoAILib.mrml as coremrml

    write_volume(coremrml.volume_from_node(volumeNode), path)


def osteoaiCommand(command, *args):
    """``PythonSlicer`` arguments that run ``osteoai <command> <args>``."""
    return ["-m", "OsteoAILib.cli", command, *[str(a) for a in args]]


class BackgroundRun:
    """Runs ``PythonSlicer <argv>`` in a QProcess; parses progress; reports the end once.

    ``onProgress(fraction, message)``, ``onFinished(ok: bool, message: str)``. The module logic receives
    the class (or any factory with the same signature and methods) as an argument, so a test can run
    without a process.
    """

    def __init__(self, onProgress, onFinished):
        self.onProgress = onProgress
        self.onFinished = onFinished
        self.process = None
        self.workDir = None
        self._buffer = ""
        self._lastError = ""
        self._cancelled = False

    def start(self, argv, workDir):
        """Run ``PythonSlicer <argv>`` with the extension's Libs importable; ``workDir`` holds its files
        and the cancel file (``argv`` should pass ``--cancel-file`` :meth:`cancelFile`)."""
        self.workDir = workDir
        python = shutil.which("PythonSlicer") or sys.executable
        env = qt.QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONPATH", os.pathsep.join(p for p in libraryPaths() + [env.value("PYTHONPATH")] if p))
        env.insert("PYTHONUNBUFFERED", "1")
        self.process = qt.QProcess()
        self.process.setProcessEnvironment(env)
        self.process.setProcessChannelMode(qt.QProcess.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.start(python, argv)

    @staticmethod
    def cancelFile(workDir):
        return os.path.join(workDir, CANCEL_FILE)

    def running(self):
        return self.process is not None and self.process.state() != qt.QProcess.NotRunning

    def cancel(self):
        """Stop the job now: the cancel file first (the job stops at its next stage boundary if it
        survives), then the whole process tree."""
        if not self.running():
            return
        self._cancelled = True
        open(self.cancelFile(self.workDir), "w").close()
        from OsteoAILib.commands.progress import kill_process_tree

        kill_process_tree(self.process.processId())
        self.process.kill()

    def waitForFinished(self, timeoutMs=-1):
        if self.process is not None:
            self.process.waitForFinished(timeoutMs)
            slicer.app.processEvents()

    def _read(self):
        self._buffer += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            parsed = parseProgress(line)
            if parsed is not None:
                self.onProgress(*parsed)
            elif line.strip():
                logging.info(line)
                self._lastError = line.strip()

    def _finished(self, *args):
        self._read()
        ok = self.process.exitStatus() == qt.QProcess.NormalExit and self.process.exitCode() == 0
        if self._cancelled:
            self.onFinished(False, _("Cancelled."))
        elif ok:
            self.onFinished(True, _("Done."))
        else:
            self.onFinished(
                False, self._lastError or _("failed (exit code {code})").format(code=self.process.exitCode())
            )


class BackgroundLogic(ScriptedLoadableModuleLogic):
    """What both modules' logic share: one background run at a time on the parameter node's input volume.

    Subclasses set ``parameterNodeClass`` and call :meth:`startRun`. ``runner``: the background-run class
    (:class:`BackgroundRun`, or a stand-in with its methods in tests)."""

    parameterNodeClass = None

    def __init__(self, runner=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.runner = runner or BackgroundRun
        self.run = None

    def getParameterNode(self):
        return self.parameterNodeClass(super().getParameterNode())

    def running(self):
        return self.run is not None and self.run.running()

    def cancel(self):
        if self.run:
            self.run.cancel()

    def startRun(self, p, prefix, argvFor, loaded, failure, onProgress=None, onFinished=None):
        """Write ``p.inputVolume`` to a fresh work folder and run ``argvFor(inputPath, outDir, workDir)`` there.

        When it ends, ``loaded(outDir)`` turns the output folder into nodes and returns the message to show;
        ``onFinished(ok, message)`` is told once, after the work folder is gone."""
        workDir = tempfile.mkdtemp(prefix=prefix)
        inputPath = os.path.join(workDir, "input.nrrd")
        writeInput(p.inputVolume, inputPath)
        outDir = os.path.join(workDir, "out")
        argv = argvFor(inputPath, outDir, workDir)

        def finished(ok, message):
            try:
                if ok:
                    message = loaded(outDir)
            except Exception as e:  # shown in the status line; the traceback goes to the log
                logging.exception(failure)
                ok, message = False, str(e)
            finally:
                shutil.rmtree(workDir, ignore_errors=True)
            if onFinished:
                onFinished(ok, message)

        self.run = self.runner(onProgress or (lambda f, m: None), finished)
        self.run.start(argv, workDir)
        return self.run
