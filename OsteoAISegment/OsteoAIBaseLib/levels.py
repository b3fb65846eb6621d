"""Vertebral level names and VerSe label ids (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 28 T13)."""

from __future__ import annotations

from .ranges import comma_ranges

NAMES: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{7 + i: f"T{i}" for i in range(1, 13)},
    **{19 + i: f"L{i}" for i in range(1, 6)},
    25: "L6",
    26: "S1",
    28: "T13",
}
IDS: dict[str, int] = {v: k for k, v in NAMES.items()}

# Craniocaudal order of the levels OsteoAI handles (T13 / L6 are transitional variants).
ORDER: list[int] = list(range(1, 20)) + [28] + list(range(20, 26))


def name(label: int) -> str:
    return NAMES[int(label)]


def label(level: str) -> int:
    try:
        return IDS[level.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown vertebral level {level!r} (expected e.g. T12 or L1)") from None


def parse_range(spec: str) -> list[int]:
    """'T11-L2' -> [18, 19, 20, 21]; 'L1' -> [20]; 'T12,L1' -> [19, 20]."""
    out: list[int] = []
    for first, last in comma_ranges(spec):
        if last is None:
            out.append(label(first))
            continue
        ia, ib = ORDER.index(label(first)), ORDER.index(label(last))
        if ia > ib:
            raise ValueError(f"level range {first + '-' + last!r} runs caudal to cranial")
        out.extend(x for x in ORDER[ia : ib + 1] if x not in (25, 28))
    return out


def is_thoracic(label_id: int) -> bool:
    return 8 <= label_id <= 19 or label_id == 28
