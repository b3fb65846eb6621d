"""Comma lists with ranges, as the command line takes them: ``T11-L2,L4`` (levels), ``0-9,20`` (seeds)."""

from __future__ import annotations


def comma_ranges(spec: str) -> list[tuple[str, str | None]]:
    """``'a-b, c'`` -> ``[('a', 'b'), ('c', None)]``: each part of a comma list, a range or a single item
    (``None`` as its end). Empty parts are skipped; the caller parses and checks the items."""
    out: list[tuple[str, str | None]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.append((a, b))
        else:
            out.append((part, None))
    return out
