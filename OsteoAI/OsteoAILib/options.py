"""Every option of a screening run, declared once.

:data:`OPTIONS` lists them (name, command-line flag, default, choices, help, panel setting). Generated
from it, never written out again elsewhere:

- :class:`PipelineOptions`, what :func:`OsteoAILib.pipeline.run_pipeline` takes;
- the ``osteoai run`` / ``batch`` / ``demo`` arguments (:func:`add_arguments`, :func:`options_from_args`);
- the background command line the Slicer module starts (:func:`cli_arguments`);
- the Slicer panel's settings (:class:`Settings`, ``OsteoAILib.mrml`` parameter node) and its parameter
  node's field types with their combo-box choices (:func:`parameter_fields`).

A choice among implementations is a registry entry (:class:`OsteoAISegmentLib.registry.Choice`):
:data:`SEGMENTERS` (in OsteoAISegmentLib, the layer below), :data:`CALIBRATION_METHODS` and
:data:`VBMD_ESTIMATORS`. Adding a segmenter, a calibration method or an estimator is one entry there
plus its own module; the command line, the panels and the parameter node follow.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from OsteoAIBaseLib.errors import InputError
from OsteoAISegmentLib.registry import Choice, Registry
from OsteoAISegmentLib.segmenters import SEGMENTERS


def _registry(kind: str, option: str, choices) -> Registry:
    """A :class:`Registry` of ``(name, label, help, implementation)`` rows, the first the default."""
    registry = Registry(kind, option)
    for row in choices:
        registry.register(Choice(*row))
    return registry


CALIBRATION_METHODS = _registry(
    "calibration method",
    "--calibration",
    [
        (
            "auto",
            "auto",
            "internal calibration when its fit is trusted, else none (with a flag saying why)",
            "OsteoAILib.calibration:calibrate_internal",
        ),
        (
            "internal",
            "internal (this scan's tissues)",
            "air, fat, muscle and blood of this scan",
            "OsteoAILib.calibration:calibrate_internal",
        ),
        (
            "phantom",
            "phantom (rods in the scan)",
            "rods of an in-scan phantom, given with --phantom-rods",
            "OsteoAILib.calibration:calibrate_phantom",
        ),
        (
            "none",
            "none (scanner HU as they are)",
            "no correction of the scanner's HU",
            "OsteoAILib.calibration:calibrate_none",
        ),
    ],
)
VBMD_ESTIMATORS = _registry(
    "vBMD estimator",
    "--vbmd",
    [
        (
            "auto",
            "auto",
            "the AI model where it is valid, calibrated HU elsewhere",
            "OsteoAILib.remeasure:estimator_auto",
        ),
        (
            "ai",
            "AI model (vbmd-mlp)",
            "the AI model; an error when it cannot be loaded",
            "OsteoAILib.remeasure:estimator_ai",
        ),
        (
            "calibrated-hu",
            "calibrated HU",
            "the plain calibrated HU of the ROI",
            "OsteoAILib.remeasure:estimator_calibrated_hu",
        ),
    ],
)

DEVICES = ("cpu", "cuda")


def parse_rods(text: str | None) -> list[tuple[float, float]] | None:
    """``"10:0, 95:100"`` -> [(10.0, 0.0), (95.0, 100.0)]; None for no text."""
    if not text or not text.strip():
        return None
    try:
        pairs = [tuple(float(x) for x in item.split(":")) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"cannot read phantom rods {text!r}: expected HU:mg_cm3 pairs, e.g. 10:0,95:100") from None
    if len(pairs) < 2 or any(len(p) != 2 for p in pairs):
        raise InputError(f"phantom rods {text!r}: expected at least two HU:mg_cm3 pairs, e.g. 10:0,95:100")
    return pairs


def format_rods(pairs) -> str:
    return ",".join(f"{h:g}:{m:g}" for h, m in pairs or [])


@dataclass(frozen=True)
class Option:
    name: str  # PipelineOptions field
    flag: str  # command-line flag
    help: str
    default: object = None  # None: not set (e.g. every level found, kVp from the header)
    type: type = str  # of the value on the command line and in the panel
    choices: Registry | tuple | None = None
    setting: str | None = None  # the panel's parameter-node name; None: not offered in the panel
    panel_range: tuple[float, float] | None = None  # spin box limits
    dest: str | None = None  # argparse dest, where older callers read another name than ``name``
    parse: Callable | None = None  # command-line / panel text -> value
    format: Callable | None = None  # value -> command-line text

    @property
    def choice_names(self) -> list[str] | None:
        if self.choices is None:
            return None
        return self.choices.names() if isinstance(self.choices, Registry) else list(self.choices)

    @property
    def panel_default(self):
        """The panel's value for the default: text fields hold "" and numbers 0 for 'not set'."""
        if self.default is not None:
            return self.default
        return self.type() if self.parse is None else ""

    @property
    def panel_type(self) -> type:
        return str if self.parse is not None else self.type


OPTIONS: tuple[Option, ...] = (
    Option("levels", "--levels", "levels to analyse, e.g. T11-L2 (default: all found)", setting="levels"),
    Option(
        "calibration",
        "--calibration",
        "how HU are calibrated",
        default="auto",
        choices=CALIBRATION_METHODS,
        setting="calibration",
    ),
    Option(
        "phantom_pairs",
        "--phantom-rods",
        "phantom calibration rods as HU:mg_cm3 pairs, e.g. 10:0,95:100,190:200",
        setting="phantomPairs",
        dest="phantom_rods",
        parse=parse_rods,
        format=format_rods,
    ),
    Option(
        "segmenter",
        "--segmenter",
        "which segmenter labels the vertebrae",
        default="auto",
        choices=SEGMENTERS,
        setting="segmenter",
    ),
    Option("device", "--device", "where the segmentation model runs", default="cpu", choices=DEVICES, setting="device"),
    Option(
        "kvp",
        "--kvp",
        "tube voltage when the header lacks it (default: DICOM KVP, else 120)",
        type=float,
        setting="kvp",
        panel_range=(0, 150),
    ),
    Option(
        "diagnostic_levels",
        "--diagnostic-levels",
        "levels whose mean gives the diagnosis (default: 2 of T11-L2)",
        setting="diagnosticLevels",
    ),
    Option(
        "vbmd_method",
        "--vbmd",
        "vBMD estimator: the AI model when available (auto), or the plain calibrated HU",
        default="auto",
        choices=VBMD_ESTIMATORS,
        setting="vbmdMethod",
    ),
    Option(
        "n_key_images",
        "--key-images",
        "number of key images (default 4)",
        default=4,
        type=int,
        setting="nKeyImages",
        panel_range=(0, 12),
        dest="key_images",
    ),
    Option(
        "radiomics",
        "--radiomics",
        "also write radiomics.csv (pyradiomics)",
        default=False,
        type=bool,
        setting="radiomics",
    ),
    Option(
        "keep_identifiers",
        "--keep-identifiers",
        "write the input file name, series description and UID into "
        "results.json (left out by default: they often identify the patient)",
        default=False,
        type=bool,
    ),
)
BY_NAME = {o.name: o for o in OPTIONS}


def _pipeline_field(o: Option):
    default = o.default
    typ = {"phantom_pairs": "list[tuple[float, float]] | None"}.get(
        o.name, o.type.__name__ if default is not None else f"{o.type.__name__} | None"
    )
    return o.name, typ, dataclasses.field(default=default)


PipelineOptions = dataclasses.make_dataclass("PipelineOptions", [_pipeline_field(o) for o in OPTIONS])
PipelineOptions.__module__ = __name__
PipelineOptions.__doc__ = "The options of one screening run (see OPTIONS for each one's meaning and default)."

Settings = dataclasses.make_dataclass(
    "Settings", [(o.setting, o.panel_type, dataclasses.field(default=o.panel_default)) for o in OPTIONS if o.setting]
)
Settings.__module__ = __name__
Settings.__doc__ = (
    "Every setting of the OsteoAI panel, as the parameter node stores them ('' or 0 for 'not set'); "
    "generated from OPTIONS."
)


def add_arguments(p: argparse.ArgumentParser, names=None) -> None:
    """The run options as arguments of ``p`` (all, or those in ``names``)."""
    for o in OPTIONS:
        if names is not None and o.name not in names:
            continue
        kw = {"help": o.help, "dest": o.dest or o.name}
        if o.type is bool:
            kw["action"] = "store_true"
        else:
            kw["default"] = o.default
            if o.parse is None and o.type is not str:
                kw["type"] = o.type
            if o.choices is not None:
                kw["choices"] = o.choice_names
                kw["help"] += f" ({', '.join(o.choice_names)}; default {o.default})"
        p.add_argument(o.flag, **kw)


def options_from_args(args) -> PipelineOptions:
    """PipelineOptions from parsed arguments (missing ones keep their defaults); InputError when invalid."""
    values = {}
    for o in OPTIONS:
        raw = getattr(args, o.dest or o.name, o.default)
        values[o.name] = o.parse(raw) if o.parse else raw
    return validate(PipelineOptions(**values))


def validate(opts: PipelineOptions) -> PipelineOptions:
    """Checks that need more than one option or the installed packages: before any work, never as a
    traceback at the end of a run."""
    for o in OPTIONS:
        value = getattr(opts, o.name)
        if isinstance(o.choices, Registry):
            why_not = o.choices.get(value).available()  # e.g. TotalSegmentator without its weights
            if why_not:
                raise InputError(f"{o.flag} {value} cannot run here: {why_not}")
        elif o.choices is not None and value not in o.choices:
            raise InputError(f"unknown {o.flag[2:]} {value!r} (expected one of {', '.join(o.choices)})")
    if opts.calibration == "phantom" and not opts.phantom_pairs:
        raise InputError("--calibration phantom needs --phantom-rods")
    if opts.radiomics:
        import importlib.util

        if importlib.util.find_spec("radiomics") is None:
            raise InputError("--radiomics needs pyradiomics, which is not installed (pip install pyradiomics)")
    return opts


def cli_arguments(opts: PipelineOptions) -> list[str]:
    """The ``osteoai run`` arguments that reproduce ``opts`` (options left unset are left out)."""
    argv: list[str] = []
    for o in OPTIONS:
        value = getattr(opts, o.name)
        if value is None or value is False:
            continue
        argv += [o.flag] if value is True else [o.flag, o.format(value) if o.format else str(value)]
    return argv


def settings_from_options(opts: PipelineOptions) -> Settings:
    """The panel's settings for ``opts`` (text fields hold "" and numbers 0 for an option left unset)."""
    values = {}
    for o in OPTIONS:
        if not o.setting:
            continue
        value = getattr(opts, o.name)
        if o.format:  # e.g. phantom rods as the text the user types: "10:0, 95:100"
            values[o.setting] = o.format(value).replace(",", ", ")
        else:
            values[o.setting] = o.panel_default if value is None else o.type(value)
    return Settings(**values)


def options_from_settings(s: Settings) -> PipelineOptions:
    """PipelineOptions from the panel (InputError on a typo); options the panel does not offer keep their defaults."""
    values = {}
    for o in OPTIONS:
        if o.setting:
            value = getattr(s, o.setting)
            if o.parse:
                value = o.parse(value)
            elif value == o.type() and o.default is None:
                value = None  # "" or 0: not set
            values[o.name] = value
    return PipelineOptions(**values)


def parameter_fields() -> dict[str, tuple[type, tuple | None, tuple | None, object]]:
    """setting -> (type, choices, range, default) for the Slicer parameter node (``parameterNodeWrapper``
    ``Choice`` / ``WithinRange`` annotations; its combo boxes list the choices in this order)."""
    return {
        o.setting: (
            o.panel_type,
            tuple(o.choice_names) if o.choices is not None else None,
            o.panel_range,
            o.panel_default,
        )
        for o in OPTIONS
        if o.setting
    }
