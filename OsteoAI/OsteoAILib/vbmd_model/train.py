"""``osteoai train-vbmd``: train the AI vBMD estimator on digital phantoms, reproducibly.

    osteoai train-vbmd --out models/vbmd-mlp --n-phantoms 300 --seed 1

Phantom seeds are ``seed * 100000 + i``; the benchmark's held-back seeds (900000 and up) are never
used here. Phantoms are split by seed into train (70%), interval calibration (15%) and test (15%);
the test split's numbers go into model.json and the model card. Per-phantom features are cached in
``--cache`` so a rerun with more epochs does not rebuild the phantoms.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np

from . import dataset
from . import model as mlp
from .features import FEATURE_NAMES, QUANTILES
from .infer import MODEL_FORMAT, MODEL_NAME, MODEL_VERSION, load_model, sha256_file

REPO = Path(__file__).resolve().parents[3]
HELD_BACK_SEED_START = 900000
COVERAGE = 0.95
# Features whose training range bounds the model's domain (outside it the pipeline keeps the
# calibrated-HU estimate): margin added on each side as a fraction of the range.
# Computed and recorded, but given no weight: the calibration's slope and intercept change when the
# scanner's HU scale changes (HU' = a*HU + b), and the estimate must not; the ROI's spread, quantiles and
# skew follow the reconstruction kernel and the real marrow's texture, where real CT is furthest from the
# phantom (phantom_realism.py), and on the phantoms they told the model nothing the mean does not
# (vbmd_error_sources.py: test MAE 3.09 without them, 3.11 with).
SHAPE_FEATURES = ("cal_sd_hu", *(f"cal_q{q:02d}_hu" for q in QUANTILES), "cal_skew")
IGNORED_FEATURES = ("cal_slope", "cal_intercept", *SHAPE_FEATURES)
DOMAIN_FEATURES = tuple(f for f in FEATURE_NAMES if f not in IGNORED_FEATURES)
DOMAIN_MARGIN = 0.25


def add_arguments(p) -> None:
    p.add_argument("--out", default=str(REPO / "models" / MODEL_NAME), help="model folder to write")
    p.add_argument("--n-phantoms", type=int, default=300, help="phantoms to generate (x ~4 levels each)")
    p.add_argument("--seed", type=int, default=1, help="seed of the phantom set, split and weights")
    p.add_argument("--epochs", type=int, default=1500)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument(
        "--cache", default=str(REPO / ".data" / "vbmd-features"), help="per-phantom feature cache (gitignored)"
    )
    p.add_argument(
        "--cache-fingerprint",
        default=None,
        help="reuse the cached rows of this stage-code fingerprint (model.json records it) "
        "instead of the current code's; phantoms not cached under it are skipped",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes building phantoms in parallel (the features do not depend on it)",
    )
    p.add_argument(
        "--build-only",
        action="store_true",
        help="build the phantoms' cached features and stop (e.g. on a machine with more cores)",
    )
    p.add_argument(
        "--masks",
        choices=["pipeline", "truth"],
        default="pipeline",
        help="ROIs from the real segmenter (default) or the phantom's own masks",
    )
    p.add_argument(
        "--grids",
        choices=["realistic", "varied", "fixed"],
        default="realistic",
        help="realistic (default): kernel, trabecular microstructure, streaks, habitus, tissue "
        "composition and a 0.6-2.4 mm x 0.6-5 mm grid drawn per phantom (dataset.REALISM); "
        "varied: the legacy phantom on 1-2 mm x 1-3 mm grids; fixed: the one small grid. "
        "kVp and dose are cycled over the seeds either way",
    )


def split_by_seed(seeds: np.ndarray, rng_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, calib, test) over rows; all levels of one phantom fall in one split."""
    uniq = np.unique(seeds)
    perm = np.random.default_rng(rng_seed).permutation(uniq)
    n_cal = max(1, int(round(0.15 * len(uniq))))
    n_test = max(1, int(round(0.15 * len(uniq))))
    cal_s, test_s = set(perm[:n_cal]), set(perm[n_cal : n_cal + n_test])
    is_cal = np.array([s in cal_s for s in seeds])
    is_test = np.array([s in test_s for s in seeds])
    return ~(is_cal | is_test), is_cal, is_test


def fit(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    hidden: int,
    epochs: int,
    lr: float,
    seed: int,
    target_scale: float,
    max_correction: float | None = None,
    dropout: float = 0.2,
    weight_decay: float = 1e-2,
    beta: float = 0.5,
    log=print,
) -> tuple[dict[str, np.ndarray], dict]:
    """Train the MLP with a beta-weighted Gaussian negative log-likelihood; returns (weights, normalisation).

    beta-NLL (Seitzer et al., ICLR 2022) weights each row's NLL by sigma**(2*beta), detached, so
    rows the model is unsure of still pull the mean (plain NLL lets sigma absorb them). 15% of the
    phantoms (``groups``) are held out inside the training split for early stopping on the plain
    NLL: with ~1000 rows the network memorises noise long before the last epoch.
    """
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # the shared 2-core machine; the data is tiny anyway
    uniq = np.random.default_rng(seed + 1).permutation(np.unique(groups))
    val_groups = set(uniq[: max(1, int(round(0.15 * len(uniq))))])
    is_val = np.array([g in val_groups for g in groups])
    mean = X[~is_val].mean(axis=0)
    std = X[~is_val].std(axis=0)
    # Features constant in training (e.g. one slice thickness) taught the network nothing: their
    # weights are still the random initial ones, so they are zeroed at inference too.
    constant = [FEATURE_NAMES[i] for i in np.nonzero(std < 1e-6)[0]]
    std[std < 1e-6] = 1.0

    ignored_names = list(IGNORED_FEATURES) + [f for f in constant if f not in IGNORED_FEATURES]
    ignored = [FEATURE_NAMES.index(f) for f in ignored_names]

    def tensors(m):
        z = torch.tensor(mlp.standardise(X[m], mean, std, ignored), dtype=torch.float32)
        plain = torch.tensor(X[m, FEATURE_NAMES.index("plain_vbmd")], dtype=torch.float32)
        return z, plain, torch.tensor(y[m], dtype=torch.float32)

    def nll(net, z, plain, yt, b=0.0):
        out = net(z)
        mu = plain + mlp.bounded(target_scale * out[:, 0], max_correction, torch.tanh)
        sigma = target_scale * (torch.nn.functional.softplus(out[:, 1]) + mlp.SIGMA_FLOOR)
        per_row = torch.log(sigma) + 0.5 * ((yt - mu) / sigma) ** 2
        if b > 0:
            per_row = per_row * sigma.detach() ** (2 * b)
        return per_row.mean(), (yt - mu).abs().mean()

    train_t, val_t = tensors(~is_val), tensors(is_val)
    net = mlp.build_torch(X.shape[1], hidden, dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    best = (float("inf"), -1, None)
    for ep in range(epochs):
        net.train()
        loss, mae = nll(net, *train_t, b=beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            vloss, vmae = nll(net, *val_t)
        if vloss.item() < best[0]:
            best = (vloss.item(), ep, {k: v.clone() for k, v in net.state_dict().items()})
        if ep % max(1, epochs // 10) == 0 or ep == epochs - 1:
            log(
                f"  epoch {ep:5d}  loss train {loss.item():.4f}  NLL val {vloss.item():.4f}  "
                f"MAE train {mae.item():.2f} val {vmae.item():.2f} mg/cm3"
            )
    net.load_state_dict(best[2])
    log(f"  kept epoch {best[1]} (best validation NLL {best[0]:.4f}; {int(is_val.sum())} validation rows)")
    if constant:
        log(f"  constant in training, ignored: {', '.join(constant)}")
    return mlp.torch_to_arrays(net), {"mean": mean.tolist(), "std": std.tolist(), "ignored": ignored_names}


def _predict(weights, norm, X, target_scale, max_correction=None):
    ignored = [FEATURE_NAMES.index(f) for f in norm.get("ignored", [])]
    z = mlp.standardise(X, np.asarray(norm["mean"]), np.asarray(norm["std"]), ignored)
    return mlp.head(mlp.forward(weights, z), X[:, FEATURE_NAMES.index("plain_vbmd")], target_scale, max_correction)


def conformal_k(y, mean, sigma, coverage=COVERAGE) -> float:
    """Split-conformal multiplier: mean -/+ k*sigma covers ``coverage`` of exchangeable new cases."""
    scores = np.sort(np.abs(y - mean) / sigma)
    n = scores.size
    rank = min(n, int(np.ceil((n + 1) * coverage)))
    return float(scores[rank - 1])


def metrics(y, plain, mean, lo, hi, kvp) -> dict:
    from ..results import acr_category

    cat = np.array([acr_category(v) for v in y])
    out = {
        "n_levels": int(y.size),
        "plain_mae": float(np.mean(np.abs(plain - y))),
        "ai_mae": float(np.mean(np.abs(mean - y))),
        "plain_bias": float(np.mean(plain - y)),
        "ai_bias": float(np.mean(mean - y)),
        "coverage_95": float(np.mean((lo <= y) & (y <= hi))),
        "mean_interval_width": float(np.mean(hi - lo)),
        "plain_category_accuracy": float(np.mean(np.array([acr_category(v) for v in plain]) == cat)),
        "ai_category_accuracy": float(np.mean(np.array([acr_category(v) for v in mean]) == cat)),
        "bias_by_kvp": {},
    }
    for k in np.unique(kvp):
        m = kvp == k
        out["bias_by_kvp"][f"{k:g}"] = {
            "plain": float(np.mean(plain[m] - y[m])),
            "ai": float(np.mean(mean[m] - y[m])),
            "n": int(m.sum()),
            "ai_mae": float(np.mean(np.abs(mean[m] - y[m]))),
            "coverage_95": float(np.mean((lo[m] <= y[m]) & (y[m] <= hi[m]))),
        }
    return out


def save_weights(path: Path, weights: dict[str, np.ndarray]) -> None:
    """npz with fixed zip timestamps, so the same seed gives the same bytes (and sha256)."""
    import io

    from OsteoAIBaseLib.atomic import atomic_path

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(weights):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(weights[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


def main(args) -> int:
    from OsteoAIBaseLib.atomic import write_json, write_text

    from .. import __version__

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    t0 = time.perf_counter()
    cmd = (
        f"osteoai train-vbmd --out {args.out} --n-phantoms {args.n_phantoms} --seed {args.seed} "
        f"--epochs {args.epochs} --hidden {args.hidden} --dropout {args.dropout} --lr {args.lr} "
        f"--masks {args.masks} --grids {args.grids}"
    )
    if args.cache_fingerprint:
        cmd += f" --cache-fingerprint {args.cache_fingerprint}"
    log(f"# {cmd}")
    log(f"# osteoai {__version__}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    seeds = [args.seed * 100000 + i for i in range(args.n_phantoms)]
    if max(seeds) >= HELD_BACK_SEED_START:
        raise SystemExit(f"--seed {args.seed} reaches the held-back seeds (>= {HELD_BACK_SEED_START})")
    log(f"building features of {len(seeds)} phantoms ({args.masks} masks), cache {args.cache}")
    fingerprint = args.cache_fingerprint or dataset.stage_fingerprint()
    if getattr(args, "workers", 1) > 1 and not args.cache_fingerprint:
        n = dataset.prebuild(seeds, args.cache, masks=args.masks, grids=args.grids, workers=args.workers, log=log)
        log(f"built {n} phantoms with {args.workers} workers  [{time.perf_counter() - t0:.0f} s]")
    if getattr(args, "build_only", False):
        return 0
    if args.cache_fingerprint:
        log(f"rows from the cache of stage code {fingerprint} (current code: {dataset.stage_fingerprint()})")
    tab = dataset.build_table(
        seeds, args.cache, masks=args.masks, log=log, fingerprint=args.cache_fingerprint, grids=args.grids
    )
    X, y = tab["X"], tab["y"]
    if y.size < 20:
        raise SystemExit(f"only {y.size} level rows: too few to train")
    tr, ca, te = split_by_seed(tab["seed"], args.seed)
    log(
        f"rows: {tr.sum()} train, {ca.sum()} interval calibration, {te.sum()} test "
        f"({len(np.unique(tab['seed']))} phantoms)  [{time.perf_counter() - t0:.0f} s]"
    )

    target_scale = 10.0
    plain = X[:, FEATURE_NAMES.index("plain_vbmd")]
    max_corr = float(1.5 * np.max(np.abs(y[tr] - plain[tr])))
    log(f"largest correction in training {max_corr / 1.5:.1f} mg/cm3; the model's bound {max_corr:.1f}")
    weights, norm = fit(
        X[tr],
        y[tr],
        tab["seed"][tr],
        hidden=args.hidden,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        target_scale=target_scale,
        max_correction=max_corr,
        dropout=args.dropout,
        log=log,
    )
    m_ca, s_ca = _predict(weights, norm, X[ca], target_scale, max_corr)
    k = conformal_k(y[ca], m_ca, s_ca)
    log(f"interval multiplier k = {k:.3f} (split-conformal, {COVERAGE:.0%}, {ca.sum()} rows)")

    result = {}
    for name, m in (("train", tr), ("test", te)):
        mean, sigma = _predict(weights, norm, X[m], target_scale, max_corr)
        result[name] = metrics(y[m], plain[m], mean, mean - k * sigma, mean + k * sigma, tab["kvp"][m])
        r = result[name]
        log(
            f"{name}: n={r['n_levels']}  MAE plain {r['plain_mae']:.2f} vs AI {r['ai_mae']:.2f} mg/cm3; "
            f"bias plain {r['plain_bias']:+.2f} vs AI {r['ai_bias']:+.2f}; coverage {r['coverage_95']:.1%} "
            f"(mean width {r['mean_interval_width']:.1f}); category accuracy plain "
            f"{r['plain_category_accuracy']:.1%} vs AI {r['ai_category_accuracy']:.1%}"
        )

    domain = {}
    for f in DOMAIN_FEATURES:
        if f in norm["ignored"]:
            continue  # the model does not read it
        col = X[:, FEATURE_NAMES.index(f)]
        lo, hi = float(col.min()), float(col.max())
        pad = DOMAIN_MARGIN * max(hi - lo, abs(hi), 1.0)
        domain[f] = [lo - pad, hi + pad]

    wfile = "weights.npz"
    save_weights(out / wfile, weights)
    import torch

    meta = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "format": MODEL_FORMAT,
        "description": "MLP: per-level trabecular ROI features -> vBMD (mg/cm3 HA) with a 95% interval",
        "architecture": {
            "type": "mlp",
            "layers": [len(FEATURE_NAMES), args.hidden, args.hidden, 2],
            "activation": "silu",
            "dropout_in_training": args.dropout,
            "outputs": ["correction (x target_scale)", "spread"],
            "mean": "plain_vbmd + M*tanh(target_scale*out0/M), M = max_correction",
            "sigma": f"target_scale*(softplus(out1)+{mlp.SIGMA_FLOOR})",
            "interval": "mean -/+ interval_k*sigma",
        },
        "features": list(FEATURE_NAMES),
        "normalisation": norm,
        "target_scale": target_scale,
        "max_correction": max_corr,
        "interval_k": k,
        "interval_coverage_target": COVERAGE,
        "calibration_methods": ["internal"],
        "domain": domain,
        "weights_file": wfile,
        "weights_sha256": sha256_file(out / wfile),
        "training": {
            "command": cmd,
            "n_phantoms": args.n_phantoms,
            "seed": args.seed,
            "phantom_seeds": [seeds[0], seeds[-1]],
            "masks": args.masks,
            "roi_source": dataset.roi_source(),
            "stage_code_fingerprint": fingerprint,
            "n_rows": {"train": int(tr.sum()), "calibration": int(ca.sum()), "test": int(te.sum())},
            "ranges": {k2: (list(v) if isinstance(v, tuple) else v) for k2, v in dataset.RANGES.items()},
            "grid": {
                k2: (list(v) if isinstance(v, tuple) else v)
                for k2, v in {"varied": dataset.GRID_RANGES, "realistic": dataset.REALISM}.get(
                    args.grids, dataset.SMALL_GRID
                ).items()
            },
            "grids": args.grids,
            "epochs": args.epochs,
            "lr": args.lr,
            "dropout": args.dropout,
            "loss": "beta-NLL (beta 0.5), weight decay 1e-2, early stopping on held-out phantoms",
        },
        "metrics": result,
        "software": {"osteoai": __version__, "torch": torch.__version__, "numpy": np.__version__},
    }
    write_json(out / "model.json", meta)
    load_model(out)  # the files just written must pass the integrity check
    log(
        f"wrote {out / wfile} ({(out / wfile).stat().st_size} bytes) and model.json; "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    write_text(out / "training_log.txt", "\n".join(lines) + "\n")
    write_text(out / "README.md", model_card(meta))
    return 0


def findings_section(block: dict | None, header: str) -> str:
    """A card paragraph from a ``model.json`` block of findings measured after training (``error_sources``:
    ``Testing/benchmarks/vbmd_error_sources.py``; ``real_ct``: ``phantom_realism.py`` and
    ``vbmd_consistency.py``). ``header`` holds ``{measured}``, filled with the block's date."""
    if not block:
        return ""
    lines = [header.format(measured=block["measured"])]
    lines += [f"- {item}" for item in block["findings"]]
    lines.append(f"Reproduce: {'; '.join(f'`{c}`' for c in block['commands'])}.")
    return "\n".join(lines) + "\n"


ERROR_SOURCES_HEADER = "**Where the error comes from** (measured {measured}):"
REAL_CT_HEADER = "**On real CT** (../shared/data, measured {measured}; no vBMD truth exists there):"


def _offsets_text(g: dict) -> str:
    """The phantoms' tissue offsets as the card states them (model.json of 3.0 recorded SDs only)."""
    if "tissue_offsets_hu" in g:
        return ", ".join(f"{m:+g} +- {sd:g}" for m, sd in g["tissue_offsets_hu"].values()) + " HU (mean +- SD)"
    return f"SD {', '.join(f'{v:g}' for v in g['tissue_offsets_sd_hu'].values())} HU"


def model_card(meta: dict) -> str:
    t, te = meta["training"], meta["metrics"]["test"]
    r = t["ranges"]
    stages = (
        "the phantom's own vertebra masks (not the segmenter), roi.py ROI placement, internal calibration"
        if t["masks"] == "truth"
        else "classical segmentation, roi.py ROI placement, internal calibration"
    )
    kv = ", ".join(f"{k} kVp {v['plain']:+.2f} / {v['ai']:+.2f}" for k, v in te["bias_by_kvp"].items())
    kv_mae = ", ".join(
        f"{k} kVp {v['ai_mae']:.2f} ({v['coverage_95']:.0%})" for k, v in te["bias_by_kvp"].items() if "ai_mae" in v
    )
    g = t["grid"]
    if t.get("grids") == "realistic":
        px = g["pixel_mm"]
        grid = (
            f"realistic phantoms (`dataset.REALISM`): kernel soft / standard / lung "
            f"({', '.join(f'{v:.0%}' for v in g['kernel'].values())}), a stochastic trabecular microstructure "
            f"of {g['texture_hu'][0]:g}-{g['texture_hu'][1]:g} HU at "
            f"{g['texture_mm'][0]:g}-{4 * g['texture_mm'][1]:g} mm "
            f"wavelengths, reference-voxel noise {g['reference_noise_hu'][0]:g}-{g['reference_noise_hu'][1]:g} HU, "
            f"low-dose streaks, body scale {g['body_scale'][0]:g}-{g['body_scale'][1]:g} (noise grows with it), "
            f"subcutaneous fat {g['fat_mm'][0]:g}-{g['fat_mm'][1]:g} mm, fat / muscle / blood HU off the table by "
            f"{_offsets_text(g)}, in-plane pixels "
            f"{px[0][0]:g}-{px[1][1]:g} mm and slices {g['slice_mm'][0]:g}-{g['slice_mm'][1]:g} mm"
        )
        grid_limit = (
            "Real CT (../shared/data) was compared with these phantoms feature by feature "
            "(`Testing/benchmarks/phantom_realism.py`); the domain check accepts most real levels, but "
            "the phantom is still a phantom: its anatomy is one spine shape scaled, its marrow a random "
            "field, not bone. Its fat, muscle and blood are drawn off the table around what the internal "
            "calibration leaves on the real scans (`dataset.REALISM`); a shift common to all three leaves "
            "no residual on a real scan, so none is drawn, and a patient who has one is misread by the "
            "plain estimate and the model alike. That composition, which a phantomless calibration cannot "
            "see, and the marrow fat that single-energy CT cannot see bound the error on these phantoms "
            "(see 'Where the error comes from')."
        )
    elif t.get("grids") == "varied":
        grid = (
            f"one voxel grid per phantom, in-plane {g['pixel_mm'][0]:g}-{g['pixel_mm'][1]:g} mm and slices "
            f"{g['slice_mm'][0]:g}-{g['slice_mm'][1]:g} mm, field of view {g['fov_mm']:g} mm"
        )
        grid_limit = (
            f"Voxel sizes outside {g['pixel_mm'][0]:g}-{g['pixel_mm'][1]:g} mm in-plane or "
            f"{g['slice_mm'][0]:g}-{g['slice_mm'][1]:g} mm slices (e.g. 0.7 mm reconstructions) were "
            "not seen in training; the domain check (range plus 25%) lets the model extrapolate a little "
            "beyond them, e.g. to 0.7 mm pixels."
        )
    else:
        grid = f"grid {g}"
        grid_limit = (
            "Trained on one grid: voxel size is not an input it has learned; other voxel sizes are "
            "judged by the other features' ranges."
        )
    return f"""# {meta["name"]} {meta["version"]} — AI vBMD estimator (model card)

**What it does.** For one vertebral level it maps features of the trabecular ROI, after the scan's
internal (phantomless) calibration, to volumetric BMD in mg/cm3 calcium-hydroxyapatite equivalent,
with a 95% interval. It predicts a *correction* to the plain calibrated-HU estimate and a spread.

**Intended use.** Research and opportunistic screening support from routine CT, inside OsteoAI's
pipeline (`osteoai run`, `--vbmd ai|auto`). Not a diagnostic device; not validated on patients.
The diagnosis still follows the ACR thresholds (> 120 normal, 80–120 osteopenia, < 80 osteoporosis)
applied to its output.

**Inputs** ({len(meta["features"])} features, `OsteoAILib/vbmd_model/features.py`): calibrated ROI HU
mean, median, SD, quantiles and skew; the plain calibrated-HU vBMD; residuals of the reference tissues
(air, fat, muscle, blood) after calibration and whether each was used; the calibrated aortic blood
enhancement (also when the fit left an enhanced aorta out: the size of the contrast correction);
where the fit puts the scanner's clipped air value against -1000 HU when air was clipped (true air lies
below it, so a negative margin says the slope is too steep); calibration slope, intercept and fit
residual; kVp; noise SD; slice thickness; pixel size; ROI volume; age when known.
All HU features are taken after calibration, so a linear change of the scanner's HU scale leaves them
unchanged; the calibration's slope and intercept, which do change, are recorded but given no weight, nor
are the ROI's SD, quantiles and skew (they follow the reconstruction kernel and real marrow texture, where
real CT is furthest from the phantom, and told the model nothing on the phantoms) or features that were
constant in training (`normalisation.ignored` in model.json).

**Architecture.** MLP {meta["architecture"]["layers"]} with SiLU and dropout, beta-NLL (Gaussian), early stopping;
the interval multiplier k = {meta["interval_k"]:.3f} is set by split-conformal calibration on held-out
phantoms. Weights `{meta["weights_file"]}` (numpy npz, sha256 in `model.json`, checked at load).
Inference is numpy only.

**Training data.** {t["n_phantoms"]} digital phantoms (`OsteoAILib.phantom`, seeds {t["phantom_seeds"][0]}–
{t["phantom_seeds"][1]}), {grid}, processed by the real stages: {stages}
(stage code fingerprint `{t.get("stage_code_fingerprint")}`). Ranges: kVp {r["kvp"]}; dose {r["dose"]}; age
{r["age_years"]} (marrow fat: the phantom's age mean plus its seeded jitter); scanner HU scale
{r["hu_scale"]} and offset {r["hu_offset"]}; beam hardening {r["beam_hardening"]}; contrast in
{r["contrast_probability"]:.0%}; vBMD {r["vbmd_mg_cm3"]} mg/cm3; age given to the model for
{r["age_known_probability"]:.0%} of phantoms. kVp and dose are cycled over the seeds (every kVp x dose
cell equally often). Rows: {t["n_rows"]}.

**Results on held-out test phantoms** (n = {te["n_levels"]} levels):

| | plain calibrated HU | AI model |
|---|---|---|
| MAE (mg/cm3) | {te["plain_mae"]:.2f} | {te["ai_mae"]:.2f} |
| bias (mg/cm3) | {te["plain_bias"]:+.2f} | {te["ai_bias"]:+.2f} |
| ACR category accuracy | {te["plain_category_accuracy"]:.1%} | {te["ai_category_accuracy"]:.1%} |

95% interval coverage {te["coverage_95"]:.1%}, mean width {te["mean_interval_width"]:.1f} mg/cm3.
Bias by kVp (plain / AI): {kv}.
AI MAE by kVp (interval coverage): {kv_mae or "not recorded"}.
`Testing/benchmarks/vbmd_accuracy.py` measures it again on held-back seeds (>= 900000) and
`Testing/benchmarks/precision.py` its repeatability; their last outputs are in `benchmark_results.txt`.

{findings_section(meta.get("error_sources"), ERROR_SOURCES_HEADER)}
{findings_section(meta.get("real_ct"), REAL_CT_HEADER)}
**Limitations.** Trained only on synthetic phantoms: real anatomy, real marrow heterogeneity,
scanner-specific spectra, metal and disease are not represented; the phantom's physics (single
effective energy per kVp) bounds what it can learn. Marrow fat is not observable in single-energy
CT: without the age, the model corrects only for the average fat of its training population.
Its contrast correction is learned from phantoms whose marrow holds a fixed 1/16 of the aortic
iodine; real marrow enhancement varies with the contrast phase and the patient.
{grid_limit} Outside its training domain (`domain` in model.json:
each used feature's training range plus 25%)
or with a calibration other than `internal`, the pipeline falls back to the plain calibrated-HU
estimate; the result says so per level (`vbmd_method` and `vbmd_reason`: which feature is out of range).
Its correction is bounded by 1.5x the largest correction seen in training. Fractured levels were left out of training.

**Reproduce.** `{t["command"]}` (log: `training_log.txt`). With `--cache-fingerprint`, the phantoms'
features were built first by the stage code of that fingerprint, e.g. on a many-core machine with the same
command plus `--workers N --build-only` and without `--cache-fingerprint`.
Software: {meta["software"]}.
"""
