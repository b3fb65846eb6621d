"""CT numbers of body tissues and bone mineral from tabulated X-ray attenuation.

Model
-----
Each material's linear attenuation ``mu = rho * sum_i w_i (mu/rho)_i`` at one *effective energy*
per tube voltage, from elemental mass attenuation coefficients (total, with coherent scattering)
of Hubbell & Seltzer, NIST X-Ray Mass Attenuation Coefficients (NISTIR 5632, version 1.4,
https://physics.nist.gov/PhysRefData/XrayMassCoef/), interpolated log-log in energy. Elemental
compositions (mass fractions) and densities are those of ICRU Report 44 (1989) / Woodard & White
(Br J Radiol 1986) as reproduced in the NIST tables, except where noted.

The CT number is ``HU = 1000 (mu - mu_water) / (mu_water - mu_air)``, so water is 0 and air -1000
at every kVp by construction.

Bone mineral reference
----------------------
Bone density is expressed as **calcium hydroxyapatite (HA) equivalent**, Ca10(PO4)6(OH)2, density
3.16 g/cm3: the ACR QCT thresholds (> 120 normal, 80-120 osteopenia, < 80 mg/cm3 osteoporosis)
are HA-equivalent (Mindways/QRM phantoms). Trabecular bone is modelled as HA mineral occupying its
own volume (vBMD / 3160 mg/cm3) inside marrow; the marrow is a volume mix of red and yellow marrow
by the marrow fat fraction. Since yellow marrow attenuates less than red, a fattier (older) marrow
lowers the trabecular HU at equal vBMD: phantomless calibration that ignores it under-reads
density in the elderly, which is exactly the bias the phantom must reproduce.

Effective energy
----------------
A polychromatic beam behaves like a monochromatic one at an effective energy of roughly 40-50 % of
the kVp after the scanner's filtration and bow-tie and the hardening by a patient-sized body. We
use 51/58/64/69 keV at 80/100/120/140 kVp (linear in between, extrapolated linearly over 60-150
kVp). These are in the range reported for clinical body CT and were chosen (not fitted per
material) so that at 120 kVp water/fat/muscle/blood/cortical bone fall in their published ranges
and the HA slope (~1.5 HU per mg/cm3) and the normative L1 trabecular HU by age (Jang et al.,
Radiology 2019: ~226 HU young, ~89 HU at 90) are reproduced; see ``Testing/Python/test_physics.py``.
This is a single-energy model: it gives the direction and rough size of kVp effects (bone and HA
HU fall with kVp, fat rises toward 0) but not a scanner-specific spectrum, which is what
phantomless calibration has to absorb.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .reference_table import REFERENCE_TISSUES

# Energies (keV) of the NIST grid used here and (mu/rho) in cm2/g, total attenuation with coherent
# scattering (Hubbell & Seltzer, NISTIR 5632, element tables z01 ... z26).
_E_KEV = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
_MU_RHO: dict[str, list[float]] = {
    "H": [0.3695, 0.3570, 0.3458, 0.3355, 0.3260, 0.3091, 0.2944, 0.2651],
    "C": [0.4420, 0.2562, 0.2076, 0.1871, 0.1753, 0.1610, 0.1514, 0.1347],
    "N": [0.6178, 0.3066, 0.2288, 0.1980, 0.1817, 0.1639, 0.1529, 0.1353],
    "O": [0.8651, 0.3779, 0.2585, 0.2132, 0.1907, 0.1678, 0.1551, 0.1361],
    "Na": [2.057, 0.7197, 0.3969, 0.2804, 0.2268, 0.1796, 0.1585, 0.1335],
    "Mg": [2.763, 0.9306, 0.4881, 0.3292, 0.2570, 0.1951, 0.1686, 0.1394],
    "P": [5.352, 1.700, 0.8096, 0.4916, 0.3494, 0.2324, 0.1865, 0.1432],
    "S": [6.708, 2.113, 0.9872, 0.5849, 0.4053, 0.2585, 0.2020, 0.1506],
    "Cl": [7.739, 2.425, 1.117, 0.6483, 0.4395, 0.2696, 0.2050, 0.1480],
    "Ar": [8.629, 2.697, 1.228, 0.7012, 0.4664, 0.2760, 0.2043, 0.1427],
    "K": [10.93, 3.413, 1.541, 0.8679, 0.5678, 0.3251, 0.2345, 0.1582],
    "Ca": [13.06, 4.080, 1.830, 1.019, 0.6578, 0.3656, 0.2571, 0.1674],
    "Fe": [25.68, 8.176, 3.629, 1.958, 1.205, 0.5952, 0.3717, 0.1964],
}
# Iodine (contrast) has its K edge at 33.17 keV: its table starts just above the edge, which is
# below every effective energy used here.
_E_KEV_I = np.array([33.17, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
_MU_RHO_I = [35.82, 22.10, 12.32, 7.579, 3.510, 1.942, 0.6978]

# Calcium hydroxyapatite, Ca10(PO4)6(OH)2: mass fractions from the formula (M = 1004.6 g/mol).
HA_DENSITY_G_CM3 = 3.16
_HA = {"H": 0.0020, "O": 0.4141, "P": 0.1850, "Ca": 0.3989}

# name -> (density g/cm3, mass fractions). ICRU-44 unless noted.
MATERIALS: dict[str, tuple[float, dict[str, float]]] = {
    "water": (1.00, {"H": 0.111894, "O": 0.888106}),
    "air": (0.001205, {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827}),  # dry, sea level
    # Woodard & White adipose tissue 3 (the ICRU-44 adipose, 0.95 g/cm3, holds more water than
    # subcutaneous / visceral fat, which CT measures near -100 HU at 120 kVp).
    "adipose": (0.93, {"H": 0.116, "C": 0.681, "N": 0.002, "O": 0.198, "Na": 0.001, "S": 0.001, "Cl": 0.001}),
    "muscle": (
        1.05,
        {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.710, "Na": 0.001, "P": 0.002, "S": 0.003, "Cl": 0.001, "K": 0.004},
    ),
    # density of whole blood at a haematocrit of ~40 % (ICRU-44 lists 1.06)
    "blood": (
        1.05,
        {
            "H": 0.102,
            "C": 0.110,
            "N": 0.033,
            "O": 0.745,
            "Na": 0.001,
            "P": 0.001,
            "S": 0.002,
            "Cl": 0.003,
            "K": 0.002,
            "Fe": 0.001,
        },
    ),
    "cortical_bone": (
        1.92,
        {"H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001, "Mg": 0.002, "P": 0.103, "S": 0.003, "Ca": 0.225},
    ),
    "red_marrow": (
        1.03,
        {"H": 0.105, "C": 0.414, "N": 0.034, "O": 0.439, "P": 0.001, "S": 0.002, "Cl": 0.002, "K": 0.002, "Fe": 0.001},
    ),
    "yellow_marrow": (0.98, {"H": 0.115, "C": 0.644, "N": 0.007, "O": 0.231, "Na": 0.001, "S": 0.001, "Cl": 0.001}),
    "lung": (
        0.26,
        {"H": 0.103, "C": 0.105, "N": 0.031, "O": 0.749, "Na": 0.002, "P": 0.002, "S": 0.003, "Cl": 0.003, "K": 0.002},
    ),  # inflated lung, tissue + air averaged
    "skin": (
        1.09,
        {"H": 0.100, "C": 0.204, "N": 0.042, "O": 0.645, "Na": 0.002, "P": 0.001, "S": 0.002, "Cl": 0.003, "K": 0.001},
    ),  # also used for generic soft tissue
    "cartilage": (
        1.10,
        {"H": 0.096, "C": 0.099, "N": 0.022, "O": 0.744, "Na": 0.005, "P": 0.022, "S": 0.009, "Cl": 0.003},
    ),  # intervertebral disc
    "csf": (1.007, {"H": 0.111, "O": 0.880, "Na": 0.005, "Cl": 0.004}),  # Woodard & White 1986
    "spinal_cord": (
        1.04,
        {"H": 0.107, "C": 0.145, "N": 0.022, "O": 0.712, "Na": 0.002, "P": 0.004, "S": 0.002, "Cl": 0.003, "K": 0.003},
    ),  # ICRU-44 brain
    "liver": (
        1.06,
        {"H": 0.102, "C": 0.139, "N": 0.030, "O": 0.716, "Na": 0.002, "P": 0.003, "S": 0.003, "Cl": 0.002, "K": 0.003},
    ),  # solid abdominal organs
    "hydroxyapatite": (HA_DENSITY_G_CM3, _HA),
}

# Effective energy (keV) per kVp; see the module docstring.
_KVP_TABLE = np.array([80.0, 100.0, 120.0, 140.0])
_KEV_TABLE = np.array([51.0, 58.0, 64.0, 69.0])

# Vertebral marrow fat fraction by age (volume fraction of yellow marrow). Approximate mean of
# MR spectroscopy / chemical-shift studies (Kugel et al., Radiology 2001; Griffith et al.,
# Radiology 2005 and JMRI 2006: ~25-30 % in young adults rising to ~55-65 % in the elderly).
_AGE_TABLE = np.array([20.0, 40.0, 60.0, 80.0])
_FAT_TABLE = np.array([0.25, 0.36, 0.48, 0.58])
STANDARD_MARROW_FAT_FRACTION = 0.48  # the value at 60 years, used when the age is unknown


def _check_kvp(kvp: float) -> float:
    kvp = float(kvp)
    if not 60.0 <= kvp <= 150.0:
        raise ValueError(f"kVp {kvp:g} outside the modelled range 60-150")
    return kvp


def effective_energy_kev(kvp: float) -> float:
    """Effective photon energy (keV) of a clinical CT beam at ``kvp`` (linear in the table, extrapolated)."""
    kvp = _check_kvp(kvp)
    slope = np.polyfit(_KVP_TABLE, _KEV_TABLE, 1)
    if kvp < _KVP_TABLE[0] or kvp > _KVP_TABLE[-1]:
        return float(np.polyval(slope, kvp))
    return float(np.interp(kvp, _KVP_TABLE, _KEV_TABLE))


@lru_cache(maxsize=4096)
def _element_mu_rho(element: str, kev: float) -> float:
    if element == "I":
        e, v = _E_KEV_I, _MU_RHO_I
    else:
        e, v = _E_KEV, _MU_RHO[element]
    if not e[0] <= kev <= e[-1]:
        raise ValueError(f"energy {kev:g} keV outside the tabulated range {e[0]:g}-{e[-1]:g} keV")
    return float(np.exp(np.interp(np.log(kev), np.log(e), np.log(v))))


def mu_of(density: float, fractions: dict[str, float], kev: float) -> float:
    """Linear attenuation (1/cm) of a mixture given by density (g/cm3) and elemental mass fractions."""
    total = sum(fractions.values())
    return density * sum(w / total * _element_mu_rho(el, float(kev)) for el, w in fractions.items())


def mu(material: str, kev: float) -> float:
    """Linear attenuation coefficient (1/cm) of a named material of :data:`MATERIALS` at ``kev``."""
    try:
        density, fractions = MATERIALS[material]
    except KeyError:
        raise ValueError(f"unknown material {material!r} (known: {', '.join(MATERIALS)})") from None
    return mu_of(density, fractions, kev)


def _hu_from_mu(m: float, kev: float) -> float:
    mw, ma = mu("water", kev), mu("air", kev)
    return 1000.0 * (m - mw) / (mw - ma)


def hu(material: str, kvp: float) -> float:
    """CT number (HU) of a named material at tube voltage ``kvp``."""
    kev = effective_energy_kev(kvp)
    return _hu_from_mu(mu(material, kev), kev)


def iodinated_blood_hu(iodine_mg_ml: float, kvp: float) -> float:
    """CT number of blood carrying ``iodine_mg_ml`` of iodine (contrast), iodine added by mass."""
    kev = effective_energy_kev(kvp)
    return _hu_from_mu(mu("blood", kev) + iodine_mg_ml * 1e-3 * _element_mu_rho("I", kev), kev)


def _marrow_mu(fat_fraction: float, kev: float) -> float:
    if not 0.0 <= fat_fraction <= 1.0:
        raise ValueError(f"marrow fat fraction {fat_fraction} outside 0-1")
    return fat_fraction * mu("yellow_marrow", kev) + (1.0 - fat_fraction) * mu("red_marrow", kev)


def trabecular_hu(vbmd_mg_cm3: float, marrow_fat_fraction: float, kvp: float) -> float:
    """Noise-free CT number of trabecular bone holding ``vbmd_mg_cm3`` of HA (HA-equivalent vBMD) in marrow.

    The mineral displaces marrow: volume fraction ``v = vbmd / 3160``; the rest is marrow, itself
    ``marrow_fat_fraction`` yellow and the remainder red marrow (volume fractions).
    """
    kev = effective_energy_kev(kvp)
    v = float(vbmd_mg_cm3) / (HA_DENSITY_G_CM3 * 1000.0)
    m = v * mu("hydroxyapatite", kev) + (1.0 - v) * _marrow_mu(marrow_fat_fraction, kev)
    return _hu_from_mu(m, kev)


def mineral_hu_per_mg(kvp: float, marrow_fat_fraction: float = STANDARD_MARROW_FAT_FRACTION) -> float:
    """HU added per mg/cm3 of HA in marrow of the given fat fraction (the slope of :func:`trabecular_hu`)."""
    return (trabecular_hu(100.0, marrow_fat_fraction, kvp) - trabecular_hu(0.0, marrow_fat_fraction, kvp)) / 100.0


def marrow_fat_vbmd_offset(vbmd_mg_cm3: float, fat_true: float, fat_assumed: float, kvp: float) -> float:
    """vBMD error (mg/cm3) from reading marrow of fat fraction ``fat_true`` as ``fat_assumed``: single-energy
    CT cannot tell more fat from less mineral, and the error grows with kVp."""
    return (
        trabecular_hu(vbmd_mg_cm3, fat_true, kvp) - trabecular_hu(vbmd_mg_cm3, fat_assumed, kvp)
    ) / mineral_hu_per_mg(kvp, fat_assumed)


def vbmd_from_hu(hu_true: float, kvp: float, marrow_fat_fraction: float = STANDARD_MARROW_FAT_FRACTION) -> float:
    """HA-equivalent vBMD (mg/cm3) whose noise-free trabecular HU is ``hu_true`` (inverse of trabecular_hu)."""
    h0 = trabecular_hu(0.0, marrow_fat_fraction, kvp)
    return (float(hu_true) - h0) / mineral_hu_per_mg(kvp, marrow_fat_fraction)


def marrow_fat_fraction_for_age(age: float) -> float:
    """Typical vertebral marrow fat fraction at ``age`` years (clamped outside 20-80)."""
    return float(np.interp(float(age), _AGE_TABLE, _FAT_TABLE))


def reference_hu(kvp: float) -> dict[str, float]:
    """Expected CT numbers of the internal-calibration reference tissues (unenhanced blood)."""
    return {t.name: hu(t.material, kvp) for t in REFERENCE_TISSUES}
