"""``osteoai phantom``: write a synthetic chest / upper-abdomen CT with known vertebral vBMD."""

from __future__ import annotations

import time

from OsteoAIBaseLib.errors import InputError


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kvp", type=int, choices=(80, 100, 120, 140), default=120)
    p.add_argument("--dose", choices=("standard", "low", "ultralow"), default="standard")
    p.add_argument("--levels", default="T1-L2", help="levels covered, within T1-L5 (default T1-L2)")
    p.add_argument("--bmd", default=None, help="per-level vBMD in mg/cm3 HA, e.g. L1=75,L2=80")
    p.add_argument(
        "--fracture",
        action="append",
        default=None,
        metavar="LEVEL:RATIO",
        help="compression fracture with this height loss, e.g. T12:0.3 (repeatable)",
    )
    p.add_argument("--contrast", action="store_true", help="contrast-enhanced (aorta, organs, marrow)")
    p.add_argument("--age", type=float, default=65.0)
    p.add_argument("--dicom", action="store_true", help="also write a DICOM series in OUT/dicom")
    p.add_argument(
        "--rib-pairs", type=int, choices=(11, 12, 13), default=12, help="rib pairs (11 or 13 to test labelling QC)"
    )
    p.add_argument("--marrow-fat", type=float, default=None, help="marrow fat fraction (default: from age)")
    p.add_argument("--hu-scale", type=float, default=1.0, help="scanner miscalibration: HU * scale + offset")
    p.add_argument("--hu-offset", type=float, default=0.0)
    p.add_argument("--beam-hardening", type=float, default=0.0, help="cupping strength (1 = 40 HU at the centre)")
    p.add_argument("--matrix", type=int, default=512, help="in-plane voxels (default 512)")
    p.add_argument("--spacing", default="0.7,0.7,1.0", help="voxel size SI,SJ,SK in mm (default 0.7,0.7,1.0)")


def _level_values(specs: list[str], sep: str, expects: str, value: str) -> dict[str, float]:
    """``{LEVEL: number}`` from comma-separated ``LEVEL<sep>number`` items across ``specs``; ``expects`` and
    ``value`` word the errors (``--bmd expects LEVEL=VALUE pairs``, ``--bmd value``)."""
    out = {}
    for part in (part for spec in specs for part in spec.split(",")):
        if not part.strip():
            continue
        if sep not in part:
            raise InputError(f"{expects}, got {part!r}")
        k, v = part.split(sep, 1)
        try:
            out[k.strip().upper()] = float(v)
        except ValueError:
            raise InputError(f"{value} for {k.strip()} is not a number: {v!r}") from None
    return out


def parse_bmd(spec: str | None) -> dict[str, float] | None:
    return _level_values([spec], "=", "--bmd expects LEVEL=VALUE pairs", "--bmd value") if spec else None


def parse_fractures(specs: list[str] | None) -> dict[str, float] | None:
    return _level_values(specs, ":", "--fracture expects LEVEL:RATIO", "--fracture ratio") if specs else None


def parse_spacing(spec: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in spec.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) <= 0:
        raise InputError(f"--spacing expects three positive numbers SI,SJ,SK in mm, got {spec!r}")
    return vals


def main(args) -> int:
    from . import PhantomParams, make_phantom, write_phantom

    params = PhantomParams(
        seed=args.seed,
        kvp=args.kvp,
        dose=args.dose,
        levels=args.levels,
        bmd=parse_bmd(args.bmd),
        fracture=parse_fractures(args.fracture),
        contrast=args.contrast,
        age=args.age,
        matrix=args.matrix,
        spacing=parse_spacing(args.spacing),
        rib_pairs=args.rib_pairs,
        marrow_fat_fraction=args.marrow_fat,
        hu_scale=args.hu_scale,
        hu_offset=args.hu_offset,
        beam_hardening=args.beam_hardening,
    )
    t0 = time.perf_counter()
    ph = make_phantom(params)
    t1 = time.perf_counter()
    files = write_phantom(ph, args.out, dicom=args.dicom)
    t2 = time.perf_counter()
    tr = ph.truth
    nk, nj, ni = ph.volume.shape
    si, sj, sk = ph.volume.spacing
    print(
        f"phantom: {ni}x{nj}x{nk} voxels at {si:g}x{sj:g}x{sk:g} mm, {params.kvp} kVp, {params.dose} dose "
        f"(noise {tr['noise_sigma_hu']:.1f} HU), age {params.age:g}, marrow fat {tr['marrow_fat_fraction']:.2f}"
        f"{', contrast' if params.contrast else ''}"
    )
    print("level  vBMD mg/cm3  trabecular HU  fracture")
    for e in tr["levels"]:
        if e["partial"]:
            continue
        frac = f"{e['fracture_ratio']:.2f}" if e["fracture"] else "-"
        hu = e["trabecular_hu_noise_free"]
        print(f"{e['level']:>5}  {e['vbmd_mg_cm3']:11.1f}  {hu if hu is None else round(hu, 1)!s:>13}  {frac:>8}")
    print(
        f"rib pairs: {tr['rib_pairs']}; reference HU: "
        + ", ".join(f"{k} {v:.0f}" for k, v in tr["reference_hu"].items())
    )
    for name, path in files.items():
        print(f"wrote {name}: {path}")
    print(f"built in {t1 - t0:.1f} s, written in {t2 - t1:.1f} s")
    return 0
