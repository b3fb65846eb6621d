"""Errors that the CLI turns into one clear line and a non-zero exit (never a traceback)."""

from __future__ import annotations

from pathlib import Path


class OsteoAIError(Exception):
    """Base class: the message is meant for the user, so it is printed with control characters escaped
    (a message may quote a header value or a path)."""

    def __str__(self) -> str:
        return printable(super().__str__())


class InputError(OsteoAIError):
    """The input cannot be used: wrong modality, unreadable, not 3D, no spine..."""


class OutputError(OsteoAIError):
    """The output folder cannot take a result: a file, not writable, full, or in use by another run."""


class CancelledError(OsteoAIError):
    """The user cancelled a running job."""


def printable(text: str) -> str:
    """``text`` on one line with control characters escaped: a header value or file name that holds a
    terminal escape sequence or a newline must not rewrite the user's terminal or split a log line."""
    out = []
    for ch in str(text):
        if ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def reader_message(e: Exception, path: Path | None = None) -> str:
    """The last line of a reader's message (ITK, nibabel, the OS), without the input's path: file and
    folder names often are patient names."""
    lines = str(e).strip().splitlines()
    text = lines[-1] if lines else "unreadable"
    if path is not None:
        for s in sorted({str(path), str(path.resolve()), str(path.parent), path.name}, key=len, reverse=True):
            text = text.replace(s, "<input>")
    return printable(text[:200])
