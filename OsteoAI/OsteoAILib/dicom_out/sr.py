"""The TID 1500 Measurement Report (Comprehensive 3D SR, highdicom): one measurement group per level
(ROI volume, mean / median / SD HU, vBMD and its 95% interval, body heights, used for diagnosis, QC flags,
estimator) that references its trabecular ROI segment, one for the diagnosis, one for the calibration and
one per calibration reference tissue. ``read_back.py`` turns it back into results.json's numbers."""

from __future__ import annotations

from pydicom.sr.coding import Code

from ..results import Results
from . import codes
from .common import MANUFACTURER, MODEL, SERIES, software_version
from .uids import uid

TEXT_RELATION = "CONTAINS"


def _m(name: Code, value, unit: Code, **kw):
    import highdicom as hd

    if value is None:
        return None
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, **kw)


def _text(name: Code, value: str):
    import highdicom as hd

    return hd.sr.TextContentItem(name=name, value=str(value), relationship_type=TEXT_RELATION)


def _add_texts(group, items: list) -> None:
    """TID 1501 allows TEXT qualitative evaluations; highdicom's constructor takes only CODE ones."""
    group[0].ContentSequence.extend(items)


def _level_group(lv, key: str, roi_seg, segment_number: int | None, ct_series_uid: str):
    import highdicom as hd

    vertebra = codes.vertebra(lv.level)
    method_name, _, method_version = (lv.vbmd_method or "unknown").partition("@")
    measurements = [
        _m(codes.VOLUME, lv.roi_volume_mm3, codes.MM3),
        _m(codes.ATTENUATION, lv.roi_mean_hu, codes.HU, derivation=codes.MEAN),
        _m(codes.ATTENUATION, lv.roi_median_hu, codes.HU, derivation=codes.MEDIAN),
        _m(codes.ATTENUATION, lv.roi_sd_hu, codes.HU, derivation=codes.SD),
        _m(
            codes.VBMD,
            lv.vbmd_mg_cm3,
            codes.MG_CM3,
            algorithm_id=hd.sr.AlgorithmIdentification(name=method_name, version=method_version or "-"),
        ),
    ]
    if lv.vbmd_ci95:
        measurements += [
            _m(codes.VBMD_LOW, lv.vbmd_ci95[0], codes.MG_CM3),
            _m(codes.VBMD_HIGH, lv.vbmd_ci95[1], codes.MG_CM3),
        ]
    for where, h in (lv.extra.get("heights_mm") or {}).items():
        measurements.append(_m(codes.private(f"height-{where}", f"Vertebral body height, {where}"), h, codes.MM))
    common = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uid(key, "track", lv.label, True), identifier=f"{lv.level} trabecular ROI"
        ),
        finding_type=codes.CANCELLOUS_BONE,
        finding_sites=[hd.sr.FindingSite(vertebra)],
        measurements=[m for m in measurements if m is not None],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(codes.USED_FOR_DIAGNOSIS, codes.YES if lv.used_for_diagnosis else codes.NO)
        ],
    )
    if segment_number is not None:
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=roi_seg.SOPClassUID,
                sop_instance_uid=roi_seg.SOPInstanceUID,
                segment_number=segment_number,
                source_series=hd.sr.SourceSeriesForSegmentation(ct_series_uid),
            ),
            **common,
        )
    else:  # no ROI could be placed: the level is still reported, with its flags
        group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    _add_texts(
        group,
        [_text(codes.VBMD_METHOD, lv.vbmd_method)] * bool(lv.vbmd_method) + [_text(codes.QC_FLAG, f) for f in lv.qc],
    )
    return group


def _diagnosis_group(res: Results, key: str):
    import highdicom as hd

    d = res.diagnosis
    measurements = [_m(codes.VBMD, d.vbmd_mg_cm3, codes.MG_CM3), _m(codes.PICKHARDT_HU, d.pickhardt_l1_hu, codes.HU)]
    if d.vbmd_ci95:
        measurements += [
            _m(codes.VBMD_LOW, d.vbmd_ci95[0], codes.MG_CM3),
            _m(codes.VBMD_HIGH, d.vbmd_ci95[1], codes.MG_CM3),
        ]
    evaluations = []
    if d.category in codes.CATEGORY:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.ACR_CATEGORY, codes.CATEGORY[d.category]))
    if d.pickhardt_triage in codes.TRIAGE:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.PICKHARDT_TRIAGE, codes.TRIAGE[d.pickhardt_triage]))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(key, "track", "diagnosis"), identifier="Diagnosis"),
        measurements=[m for m in measurements if m is not None] or None,
        qualitative_evaluations=evaluations or None,
    )
    _add_texts(
        group,
        [_text(codes.DIAGNOSTIC_LEVELS, ", ".join(d.levels))] * bool(d.levels)
        + [_text(codes.CRITERIA, d.criteria)] * bool(d.criteria)
        + [_text(codes.QC_FLAG, f) for f in res.qc],
    )
    return group


def _calibration_groups(res: Results, key: str) -> list:
    import highdicom as hd

    c = res.calibration
    measurements = [
        _m(codes.CAL_SLOPE, c.slope, codes.NO_UNITS),
        _m(codes.CAL_INTERCEPT, c.intercept, codes.HU),
        _m(codes.CAL_RESIDUAL, c.residual_hu, codes.HU),
        _m(codes.CAL_KVP, c.kvp, codes.KV),
        _m(codes.MINERAL_SENSITIVITY, c.hu_per_mg_cm3, codes.HU_PER_MG_CM3),
        _m(codes.HU_AT_ZERO, c.hu_at_zero_mg_cm3, codes.HU),
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(key, "track", "calibration"), identifier="Calibration"),
        measurements=[m for m in measurements if m is not None],
    )
    _add_texts(
        group,
        [_text(codes.CAL_METHOD, c.method), _text(codes.CAL_KVP_SOURCE, c.kvp_source)]
        + [_text(codes.CAL_NOTES, c.notes)] * bool(c.notes)
        + [_text(codes.QC_FLAG, f) for f in c.qc],
    )
    groups = [group]
    for name, ref in sorted(c.references.items()):
        ms = [
            _m(codes.private(f"ref-{suffix}", f"{name} {meaning}"), ref.get(k), unit)
            for k, (suffix, meaning, unit) in codes.REFERENCE_NUMBERS.items()
            if ref.get(k) is not None
        ]
        g = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=uid(key, "track", "reference", name), identifier=f"Calibration reference: {name}"
            ),
            measurements=ms or None,
            qualitative_evaluations=[
                hd.sr.QualitativeEvaluation(codes.REFERENCE_USED, codes.YES if ref.get("used") else codes.NO)
            ],
        )
        if ref.get("why"):
            _add_texts(g, [_text(codes.REFERENCE_WHY, ref["why"])])
        groups.append(g)
    return groups


def build_sr(res: Results, key: str, evidence: list, roi_seg, roi_segments: dict[int, int], ct_series_uid: str):
    import highdicom as hd

    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uid(key, "device"), name="OsteoAI", manufacturer_name=MANUFACTURER, model_name=MODEL
        ),
    )
    groups = [_level_group(lv, key, roi_seg, roi_segments.get(lv.label), ct_series_uid) for lv in res.levels]
    groups.append(_diagnosis_group(res, key))
    groups += _calibration_groups(res, key)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.PROCEDURE,
        imaging_measurements=groups,
        title=codes.TITLE,
    )
    number, description = SERIES["sr"]
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=uid(key, "sr", "series"),
        series_number=number,
        sop_instance_uid=uid(key, "sr", "sop"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=description,
        software_versions=software_version(),
        manufacturer_model_name=MODEL,
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                designator=codes.PRIVATE, name="OsteoAI private codes", responsible_organization="OsteoAI"
            )
        ],
    )
