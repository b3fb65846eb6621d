"""The finding in plain language for the person who uploaded the scan, with its limits."""

from __future__ import annotations

from OsteoAILib.results import ACR_NORMAL_ABOVE, ACR_OSTEOPOROSIS_BELOW, Results

LIMITS = [
    "This is research software, not a medical device and not a diagnosis. Only a doctor can tell what "
    "the result means for you, together with your history and, where needed, a DXA scan.",
    "The number is estimated from a CT made for another purpose, without a calibration phantom; it carries "
    "an uncertainty (the interval below) and can be wrong when the scan quality notes below say so.",
    "The bone density thresholds (ACR) apply to adults; they do not apply to children.",
]

MEANING = {
    "normal": f"above {ACR_NORMAL_ABOVE:g} mg/cm³: in the range the ACR calls normal bone density.",
    "osteopenia": f"between {ACR_OSTEOPOROSIS_BELOW:g} and {ACR_NORMAL_ABOVE:g} mg/cm³: lower than normal "
    "(the ACR calls this range osteopenia). Talk to your doctor about it.",
    "osteoporosis": f"below {ACR_OSTEOPOROSIS_BELOW:g} mg/cm³: in the range the ACR calls osteoporosis. "
    "Please show this result to your doctor.",
}


def explain(results: Results) -> dict:
    """``{"headline", "detail": [...], "notes": [...], "limits": [...]}`` (plain sentences)."""
    d = results.diagnosis
    if d.vbmd_mg_cm3 is None or not d.category:
        headline = "No bone density could be measured reliably on this scan."
        detail = ["The scan quality notes below say why. A doctor can look at the images."]
    else:
        headline = f"Estimated bone density of the spine: {d.vbmd_mg_cm3:.0f} mg/cm³ ({d.category})."
        detail = [f"This is {MEANING[d.category]}", f"Measured in the vertebra(e) {', '.join(d.levels)} of your spine."]
        if d.vbmd_ci95:
            detail.append(
                f"Given the uncertainty of the measurement the value lies between "
                f"{d.vbmd_ci95[0]:.0f} and {d.vbmd_ci95[1]:.0f} mg/cm³ (95% interval)."
            )
    notes = [_plain_flag(f) for f in results.qc]
    return {"headline": headline, "detail": detail, "notes": notes, "limits": LIMITS}


def _plain_flag(flag: str) -> str:
    code, _, text = flag.partition(":")
    return f"{code.replace('_', ' ')}: {text.strip()}" if text else code.replace("_", " ")
