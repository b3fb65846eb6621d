"""The result of one screening, schema ``osteoai/results/v1``.

A vBMD number is a medical statement: it never travels without its calibration, the levels used,
its QC flags and the software/model versions. Every producer (CLI, Slicer bridge) fills these
dataclasses; ``to_dict`` is exactly what goes into ``results.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SCHEMA = "osteoai/results/v1"

# ACR practice parameter for QCT (mg/cm3, mean of two lumbar levels, hydroxyapatite equivalent).
ACR_NORMAL_ABOVE = 120.0
ACR_OSTEOPOROSIS_BELOW = 80.0
# Pickhardt et al. 2013, L1 trabecular attenuation triage (raw HU, no calibration).
PICKHARDT_LIKELY_OSTEOPOROSIS_HU = 110.0
PICKHARDT_LIKELY_NORMAL_HU = 160.0


def acr_category(vbmd_mg_cm3: float) -> str:
    if vbmd_mg_cm3 > ACR_NORMAL_ABOVE:
        return "normal"
    if vbmd_mg_cm3 >= ACR_OSTEOPOROSIS_BELOW:
        return "osteopenia"
    return "osteoporosis"


def pickhardt_triage(l1_hu: float) -> str:
    if l1_hu <= PICKHARDT_LIKELY_OSTEOPOROSIS_HU:
        return "likely osteoporosis"
    if l1_hu > PICKHARDT_LIKELY_NORMAL_HU:
        return "likely normal"
    return "indeterminate"


@dataclass
class LevelResult:
    level: str  # "T12"
    label: int  # VerSe id
    roi_volume_mm3: float = 0.0
    roi_mean_hu: float | None = None
    roi_median_hu: float | None = None
    roi_sd_hu: float | None = None
    vbmd_mg_cm3: float | None = None
    vbmd_ci95: tuple[float, float] | None = None
    vbmd_method: str = ""  # "calibrated-hu" or "ai:<model>@<version>"
    vbmd_reason: str = ""  # why that estimator: "in the model's domain", or which feature is out of it
    qc: list[str] = field(default_factory=list)
    used_for_diagnosis: bool = False
    extra: dict = field(default_factory=dict)  # heights, fracture grade, ROI box...


@dataclass
class Calibration:
    method: str  # "internal", "phantom", "none"
    slope: float = 1.0  # HU_true = slope * HU_measured + intercept
    intercept: float = 0.0
    residual_hu: float | None = None  # RMS residual of the fit
    kvp: float = 120.0
    kvp_source: str = "default"  # "dicom", "sidecar", "user", "default"
    references: dict = field(default_factory=dict)  # name -> {measured_hu, expected_hu, n_voxels, used}
    hu_per_mg_cm3: float | None = None  # mineral sensitivity at this kVp
    hu_at_zero_mg_cm3: float | None = None
    qc: list[str] = field(default_factory=list)
    notes: str = ""


@dataclass
class Diagnosis:
    vbmd_mg_cm3: float | None
    category: str | None  # "normal" | "osteopenia" | "osteoporosis" | None when not possible
    levels: list[str]
    criteria: str
    vbmd_ci95: tuple[float, float] | None = None
    pickhardt_l1_hu: float | None = None
    pickhardt_triage: str | None = None


@dataclass
class Results:
    input: dict
    levels: list[LevelResult]
    diagnosis: Diagnosis
    calibration: Calibration
    qc: list[str] = field(default_factory=list)
    timing_s: dict = field(default_factory=dict)
    software: dict = field(default_factory=dict)
    key_images: list[dict] = field(default_factory=list)
    # Every other file of the output folder -> its sha256, filled when the folder is written: a folder
    # whose results.json lists files that are absent or differ is not this result.
    files: dict = field(default_factory=dict)
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        return cls(
            input=d["input"],
            levels=[LevelResult(**lv) for lv in d["levels"]],
            diagnosis=Diagnosis(**d["diagnosis"]),
            calibration=Calibration(**d["calibration"]),
            qc=list(d.get("qc", [])),
            timing_s=dict(d.get("timing_s", {})),
            software=dict(d.get("software", {})),
            key_images=list(d.get("key_images", [])),
            files=dict(d.get("files", {})),
            schema=d.get("schema", SCHEMA),
        )
