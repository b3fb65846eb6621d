"""Named choices of a run (segmenters, calibration methods, vBMD estimators) declared once.

A :class:`Registry` holds the choices of one kind; everything that offers them (argparse choices, the
Slicer parameter node and combo boxes, the background command line, error messages) reads them from
here, and the code that runs a choice looks it up here instead of comparing strings. A choice names its
implementation as ``"package.module:function"``, imported only when the choice runs: listing the
segmenters for ``--help`` must not import torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from OsteoAIBaseLib.errors import InputError


def always_available() -> str | None:
    return None


@dataclass(frozen=True)
class Choice:
    name: str  # what the user types and what results.json records, e.g. "classical"
    label: str  # short text for a combo box
    help: str  # one line for --help and tool tips
    implementation: str  # "package.module:function"
    available: Callable[[], str | None] = always_available  # None when usable here, else why not

    def load(self) -> Callable:
        module, _, attr = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """The choices of one kind, in the order they are offered; the first is the default."""

    def __init__(self, kind: str, option: str):
        self.kind = kind  # "segmenter", used in messages
        self.option = option  # "--segmenter", used in messages
        self._choices: dict[str, Choice] = {}

    def register(self, choice: Choice) -> Choice:
        if choice.name in self._choices:
            raise ValueError(f"{self.kind} {choice.name!r} is registered twice")
        self._choices[choice.name] = choice
        return choice

    def unregister(self, name: str) -> None:
        self._choices.pop(name, None)

    def names(self) -> list[str]:
        return list(self._choices)

    @property
    def default(self) -> str:
        return next(iter(self._choices))

    def __contains__(self, name: str) -> bool:
        return name in self._choices

    def __iter__(self):
        return iter(self._choices.values())

    def get(self, name: str | None) -> Choice:
        """The choice called ``name`` (case-insensitive; None or "" is the default); InputError otherwise."""
        key = (name or self.default).lower()
        if key not in self._choices:
            raise InputError(f"unknown {self.kind} {name!r} (expected one of {', '.join(self._choices)})")
        return self._choices[key]
