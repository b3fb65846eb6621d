"""Coded concepts of the DICOM outputs. Standard codes where one exists (SNOMED CT, DCM, UCUM);
the rest in OsteoAI's private coding scheme "99OSTEOAI" (a "99" prefix marks a private scheme in DICOM),
so no code is borrowed for a meaning it does not have."""

from __future__ import annotations

from pydicom.sr.coding import Code

from ..terminology import SNOMED_CANCELLOUS_BONE, SNOMED_VERTEBRA

PRIVATE = "99OSTEOAI"
ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
TISSUE = Code("85756007", "SCT", "Tissue")
CANCELLOUS_BONE = Code(SNOMED_CANCELLOUS_BONE[1], "SCT", SNOMED_CANCELLOUS_BONE[2])


def vertebra(level: str) -> Code:
    code = SNOMED_VERTEBRA.get(level)
    return Code(code, "SCT", f"{level} vertebra") if code else Code(f"vert-{level}", PRIVATE, f"{level} vertebra")


def private(value: str, meaning: str) -> Code:
    # CodeValue is SH (16 characters): longer values move to LongCodeValue, which older viewers ignore.
    assert len(value) <= 16, value
    return Code(value, PRIVATE, meaning[:64])


# Measurements
VOLUME = Code("118565006", "SCT", "Volume")
ATTENUATION = Code("112031", "DCM", "Attenuation Coefficient")
MEAN = Code("373098007", "SCT", "Mean")
MEDIAN = Code("373099004", "SCT", "Median")
SD = Code("386136009", "SCT", "Standard Deviation")
HEIGHT = Code("121207", "DCM", "Height")
VBMD = private("vbmd", "Volumetric bone mineral density (HA equivalent)")
VBMD_LOW = private("vbmd-ci-low", "vBMD 95% interval lower limit")
VBMD_HIGH = private("vbmd-ci-high", "vBMD 95% interval upper limit")
PICKHARDT_HU = private("l1-hu", "L1 trabecular attenuation (Pickhardt triage)")

# Units (UCUM)
MM3 = Code("mm3", "UCUM", "cubic millimeter")
MM = Code("mm", "UCUM", "millimeter")
HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
MG_CM3 = Code("mg/cm3", "UCUM", "milligram per cubic centimeter")
HU_PER_MG_CM3 = Code("[hnsf'U]/(mg/cm3)", "UCUM", "Hounsfield unit per milligram per cubic centimeter")
NO_UNITS = Code("1", "UCUM", "no units")
KV = Code("kV", "UCUM", "kilovolt")
VOXELS = Code("{voxels}", "UCUM", "voxels")

# Qualitative evaluations and text items
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")
USED_FOR_DIAGNOSIS = private("used-for-dx", "Used for diagnosis")
ACR_CATEGORY = private("acr-category", "ACR QCT category")
CATEGORY = {
    "normal": Code("17621005", "SCT", "Normal"),
    "osteopenia": Code("312894000", "SCT", "Osteopenia"),
    "osteoporosis": Code("64859006", "SCT", "Osteoporosis"),
}
PICKHARDT_TRIAGE = private("triage", "Pickhardt L1 triage")
TRIAGE = {
    "likely osteoporosis": private("triage-op", "likely osteoporosis"),
    "indeterminate": private("triage-indet", "indeterminate"),
    "likely normal": private("triage-normal", "likely normal"),
}
QC_FLAG = private("qc-flag", "QC flag")
VBMD_METHOD = private("vbmd-method", "vBMD estimator")
DIAGNOSTIC_LEVELS = private("dx-levels", "Diagnostic levels")
CRITERIA = private("dx-criteria", "Diagnostic criteria")
CAL_METHOD = private("cal-method", "Calibration method")
CAL_KVP_SOURCE = private("kvp-source", "kVp source")
CAL_NOTES = private("cal-notes", "Calibration notes")
CAL_SLOPE = private("cal-slope", "Calibration slope")
CAL_INTERCEPT = private("cal-intercept", "Calibration intercept")
CAL_RESIDUAL = private("cal-residual", "Calibration RMS residual")
CAL_KVP = Code("113733", "DCM", "KVP")
MINERAL_SENSITIVITY = private("hu-per-mg", "CT number per mg/cm3 of mineral")
HU_AT_ZERO = private("hu-at-zero", "CT number at zero mineral")
REFERENCE_USED = private("ref-used", "Reference tissue used in the fit")
REFERENCE_WHY = private("ref-why", "Reference tissue note")

# Reference-tissue numbers of results.json: key -> (code suffix, meaning, unit)
REFERENCE_NUMBERS = {
    "measured_hu": ("measured", "measured CT number", HU),
    "expected_hu": ("expected", "expected CT number", HU),
    "calibrated_hu": ("calibrated", "calibrated CT number", HU),
    "residual_hu": ("residual", "calibration residual", HU),
    "sd_hu": ("sd", "CT number SD", HU),
    "n_voxels": ("voxels", "voxels", VOXELS),
}

# Report, procedure and groups
PROCEDURE = Code("77477000", "SCT", "Computed tomography")  # CID 100 has no QCT entry: the generic CT
TITLE = Code("126000", "DCM", "Imaging Measurement Report")
