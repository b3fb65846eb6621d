"""Read DICOM header values without trusting them: a malformed value is reported, never a traceback.

pydicom converts DS/IS values on access and raises (or warns and passes the raw string on) for
'abc', '120\\140' or non-ASCII digits. Every number the reader uses goes through :func:`numbers`,
which parses the stored text itself: ASCII decimals only, finite, the expected count.
"""

from __future__ import annotations

import math
import re

from .errors import printable

_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


_BINARY_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}


class BadValue(ValueError):
    """A header value is present but unusable; ``str()`` is a printable, short rendering of it."""


def _element(ds, keyword: str):
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if ds is None or tag is None:
        return None
    try:
        return ds.get_item(tag)
    except Exception:
        return None


def raw_text(ds, keyword: str) -> str | None:
    """The element's value as text (multi-values joined by '\\'), None when absent or empty."""
    elem = _element(ds, keyword)
    if elem is None:
        return None
    value = elem.value
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1")
    elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip(" \x00")
    return text or None


def text(ds, keyword: str) -> str:
    """A string attribute, '' when absent (never raises)."""
    return raw_text(ds, keyword) or ""


def numbers(ds, keyword: str, count: int | None = None) -> list[float] | None:
    """Parsed numbers of a DS/IS/US value; None when absent; BadValue when malformed or not finite."""
    elem = _element(ds, keyword)
    if elem is None:
        return None
    value = elem.value
    if str(getattr(elem, "VR", "")) in _BINARY_VRS:
        try:
            value = ds[elem.tag].value  # binary numbers: let pydicom unpack them
        except Exception:
            raise BadValue("undecodable") from None
        seq = list(value) if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]
        if not seq or not all(isinstance(v, int | float) and math.isfinite(v) for v in seq):
            raise BadValue(shorten(str(value)))
        out = [float(v) for v in seq]
        if count is not None and len(out) != count:
            raise BadValue(shorten(str(value)))
        return out
    if isinstance(value, int | float) and not isinstance(value, bool):
        parts = [repr(float(value))]
    else:
        t = raw_text(ds, keyword)
        if t is None:
            return None
        parts = [p.strip(" \x00") for p in t.split("\\")]
    out = []
    for p in parts:
        if not p.isascii() or not _DECIMAL.fullmatch(p):
            raise BadValue(shorten(raw_text(ds, keyword) or ""))
        v = float(p)
        if not math.isfinite(v):
            raise BadValue(shorten(raw_text(ds, keyword) or ""))
        out.append(v)
    if count is not None and len(out) != count:
        raise BadValue(shorten(raw_text(ds, keyword) or ""))
    return out


def number(ds, keyword: str) -> float | None:
    """A single number; None when absent; BadValue when malformed or multi-valued."""
    v = numbers(ds, keyword)
    if v is None:
        return None
    if len(v) != 1:
        raise BadValue(shorten(raw_text(ds, keyword) or ""))
    return v[0]


def optional_number(ds, keyword: str, notes: list[str], lo: float = -math.inf, hi: float = math.inf) -> float | None:
    """A descriptive number (KVP, CTDIvol...): None when absent, unreadable or outside lo..hi; an unusable
    value adds a 'header' note instead of failing the read."""
    try:
        v = number(ds, keyword)
    except BadValue as e:
        notes.append(f"header: {keyword} value '{e}' is unreadable and was ignored")
        return None
    if v is not None and not lo <= v <= hi:
        notes.append(f"header: {keyword} value {v:g} is implausible and was ignored")
        return None
    return v


def shorten(s: str, n: int = 40) -> str:
    s = printable(s)
    return s if len(s) <= n else s[: n - 3] + "..."
