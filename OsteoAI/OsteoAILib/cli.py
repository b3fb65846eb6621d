"""``osteoai`` command line. Each subcommand lives in its own module exposing
``add_arguments(parser)`` and ``main(args) -> int``; this file only wires them up, so the
modules stay importable (and testable) on their own.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from OsteoAIBaseLib.errors import OsteoAIError

from . import __version__

# name -> (module, one-line help). Modules are imported lazily: `osteoai phantom` must not pay
# for importing torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("OsteoAILib.phantom.command", "write a synthetic spine CT with known vBMD"),
    "run": ("OsteoAILib.commands.run", "screen a CT: vertebrae, ROIs, calibration, vBMD, key images"),
    "segment": ("OsteoAILib.commands.segment", "label the vertebrae of a CT (what the Slicer segment module runs)"),
    "batch": ("OsteoAILib.batch.command", "screen a cohort: many CTs, local processes or a Dask cluster, resumable"),
    "demo": ("OsteoAILib.commands.demo", "build the default phantom and screen it"),
    "serve-dicom": ("OsteoAILib.commands.serve_dicom", "DICOM node: screen every CT study received, forward SEG/SR"),
    "web": ("OsteoAIWeb.command", "review app and upload page in the browser (trame-slicer)"),
    "evaluate-segmenter": ("OsteoAILib.segmenter_training.evaluate", "Dice and identification per segmenter"),
    "train-segmenter": ("OsteoAILib.segmenter_training.command", "train the MONAI vertebra segmenter"),
    "train-vbmd": ("OsteoAILib.vbmd_model.train", "train the AI vBMD estimator on phantoms"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osteoai", description="Opportunistic osteoporosis screening from CT.")
    parser.add_argument("--version", action="version", version=f"osteoai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as e:
            if not e.name or not module.startswith(e.name):
                raise
            p.set_defaults(_missing=True)  # listed but not built into this install
    return parser


def reuse_freed_memory() -> bool:
    """Serve large arrays from the heap and keep freed memory for the next one (glibc only; True if set).

    A run allocates and frees a CT-sized array (130-300 MB) dozens of times. glibc gives each one its own
    mmap and unmaps it on free, so every new array faults all its pages in afresh: on the project's 2-core
    VM that was 5-10 s of system time in a 20 s `osteoai run`. With mmap off and the heap never trimmed,
    freed pages are reused; peak RSS stays within ~10% (measured, README speed rows).
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h> parameter numbers
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


# Commands that screen one input and exit: the heap they keep at their peak goes with the process (a server
# such as serve-dicom or web keeps the allocator's default and returns freed memory to the system).
ONE_SHOT = ("run", "segment", "demo")


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports every command module: Ctrl-C lands here at start-up
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("osteoai: interrupted", file=sys.stderr)
        return 130
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"osteoai: command {args.command!r} is not available in this install", file=sys.stderr)
        return 2
    if args.command in ONE_SHOT:
        reuse_freed_memory()
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except OsteoAIError as e:
        print(f"osteoai {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"osteoai {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
