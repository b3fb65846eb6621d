"""Where the AI vBMD model's error on phantoms comes from (issue 13): the test split of its own training
phantoms, split by what the scan lets the calibration see, and the same network retrained with the
phantoms' hidden settings added as inputs, which no real scan shows.

1. MAE of the plain calibrated-HU estimate and of the model on the test phantoms (the split ``train-vbmd``
   held out), by the number of reference tissues the calibration kept, air used or clipped, contrast, age
   given or not, kernel, dose, slice thickness and kVp; and how much of the error is shared by the levels of
   one phantom (its calibration, its marrow fat) against what differs between levels (ROI noise, texture).
2. Privileged information: a small MLP (same inputs as the model, MAE loss, early stopping on the
   calibration split) trained again with hidden settings appended: the patient's tissue offsets from the
   table, the beam hardening, the scanner's HU scale and offset, the true age. The MAE left when the
   network knows them is what they do not explain (marrow-fat jitter, ROI noise, texture, partial volume):
   a floor for any estimator that sees only the scan.

Reads the per-phantom feature cache that ``osteoai train-vbmd`` builds (rows of the stage code recorded in
model.json); a phantom missing there is skipped. Needs torch (like training).

Run: .venv/bin/python Testing/benchmarks/vbmd_error_sources.py --cache .data/vbmd-features [--model DIR]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

REFS = ("air", "fat", "muscle", "blood")


def table(model, cache: str) -> dict:
    """The model's training rows, its split and its predictions, plus each row's phantom settings."""
    from OsteoAILib.vbmd_model import dataset
    from OsteoAILib.vbmd_model.features import FEATURE_NAMES
    from OsteoAILib.vbmd_model.train import split_by_seed

    t = model.meta["training"]
    seeds = range(t["phantom_seeds"][0], t["phantom_seeds"][1] + 1)
    tab = dataset.build_table(
        seeds,
        cache,
        masks=t["masks"],
        grids=t.get("grids"),
        fingerprint=t["stage_code_fingerprint"],
        log=lambda *_: None,
    )
    if tab["y"].size == 0:
        raise SystemExit(f"no rows of stage code {t['stage_code_fingerprint']} in {cache}: build them first")
    tab["split"] = split_by_seed(tab["seed"], t["seed"])
    tab["ai"], tab["lo"], tab["hi"] = model.predict(tab["X"])
    tab["params"] = {s: dataset.training_params(int(s), t.get("grids") or "realistic") for s in np.unique(tab["seed"])}
    col = {n: tab["X"][:, FEATURE_NAMES.index(n)] for n in FEATURE_NAMES}
    tab["n_refs"] = sum(col[f"ref_{r}_used"] for r in REFS).astype(int)
    tab["col"] = col
    return tab


def by_group(tab) -> None:
    _, _, te = tab["split"]
    y, plain, ai, lo, hi = tab["y"], tab["X"][:, 0], tab["ai"], tab["lo"], tab["hi"]
    p = tab["params"]

    def setting(key):
        return np.array([p[s][key] for s in tab["seed"]])

    groups = [
        ("references kept", tab["n_refs"]),
        ("air used", tab["col"]["ref_air_used"].astype(int)),
        ("contrast", setting("contrast")),
        ("age given", setting("_age_known")),
        ("kernel", setting("kernel")),
        ("dose", np.asarray(tab["dose"])),
        ("slice > 3 mm", np.array([p[s]["spacing"][2] > 3.0 for s in tab["seed"]])),
        ("kVp", tab["kvp"].astype(int)),
    ]
    print(
        f"{'test phantoms, truth masks':34}{'n':>6}{'plain MAE':>11}{'bias':>8}{'AI MAE':>9}{'bias':>8}{'coverage':>10}"
    )
    for name, key in groups:
        for v in np.unique(key[te]):
            m = te & (key == v)
            cov = np.mean((lo[m] <= y[m]) & (y[m] <= hi[m]))
            print(
                f"  {f'{name}: {v}':32}{m.sum():>6d}{np.mean(np.abs(plain[m] - y[m])):>11.2f}"
                f"{np.mean(plain[m] - y[m]):>+8.2f}{np.mean(np.abs(ai[m] - y[m])):>9.2f}"
                f"{np.mean(ai[m] - y[m]):>+8.2f}{cov:>10.0%}"
            )
    err = ai[te] - y[te]
    seeds = tab["seed"][te]
    means = {s: err[seeds == s].mean() for s in np.unique(seeds)}
    within = np.array([e - means[s] for e, s in zip(err, seeds, strict=True)])
    print(
        f"AI error shared by a phantom's levels: SD {np.std(list(means.values())):.2f} mg/cm3 (calibration, marrow "
        f"fat); between its levels: SD {within.std():.2f} (ROI noise, texture, partial volume)"
    )


def hidden_settings(tab) -> dict[str, np.ndarray]:
    p, s = tab["params"], tab["seed"]

    def col(f):
        return np.array([f(p[x]) for x in s], dtype=float)

    return {
        "tissue offsets (fat, muscle, blood)": np.column_stack(
            [col(lambda q, k=k: q["tissue_offsets_hu"][k]) for k in ("fat", "muscle", "blood")]
        ),
        "beam hardening": col(lambda q: q["beam_hardening"])[:, None],
        "scanner HU scale and offset": np.column_stack([col(lambda q: q["hu_scale"]), col(lambda q: q["hu_offset"])]),
        "true age": col(lambda q: q["age"])[:, None],
    }


def fit_mae(tab, Z: np.ndarray, epochs: int, seed: int = 0) -> np.ndarray:
    """Test-split |error| of a [Z -> 64 -> 64 -> correction] MLP (MAE loss, kept at its best calibration-split
    epoch); the same small network for every input set, so only the inputs differ."""
    import torch

    torch.manual_seed(seed)
    tr, ca, te = tab["split"]
    mu, sd = Z[tr].mean(0), Z[tr].std(0) + 1e-6
    z = torch.tensor((Z - mu) / sd, dtype=torch.float32)
    plain = torch.tensor(tab["X"][:, 0], dtype=torch.float32)
    y = torch.tensor(tab["y"], dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(Z.shape[1], 64),
        torch.nn.SiLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 64),
        torch.nn.SiLU(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-2)
    trm, cam = torch.tensor(tr), torch.tensor(ca)
    best, best_pred = float("inf"), None
    for _ in range(epochs):
        net.train()
        loss = (plain[trm] + 10 * net(z[trm])[:, 0] - y[trm]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            pred = plain + 10 * net(z)[:, 0]
            v = (pred[cam] - y[cam]).abs().mean().item()
        if v < best:
            best, best_pred = v, pred.numpy().copy()
    return np.abs(best_pred - tab["y"])[te]


def privileged(tab, epochs: int) -> None:
    import torch
    from OsteoAILib.vbmd_model.features import FEATURE_NAMES
    from OsteoAILib.vbmd_model.train import IGNORED_FEATURES

    torch.set_num_threads(1)
    keep = [i for i, f in enumerate(FEATURE_NAMES) if f not in IGNORED_FEATURES]
    base = tab["X"][:, keep]
    hidden = hidden_settings(tab)
    kvp = tab["kvp"][tab["split"][2]]
    kvps = np.unique(kvp)
    print(f"\nprivileged information: test MAE of one small MLP given the scan's features plus ({epochs} epochs)")
    print(f"  {'inputs':48}{'MAE':>6}   " + " ".join(f"{k:>5.0f}" for k in kvps) + "  kVp")
    runs = [("the model's features only", base)]
    runs += [(f"+ {name}", np.column_stack([base, v])) for name, v in hidden.items()]
    runs.append(("+ all of the above", np.column_stack([base, *hidden.values()])))
    for name, Z in runs:
        e = fit_mae(tab, Z, epochs)
        print(f"  {name:48}{e.mean():>6.2f}   " + " ".join(f"{e[kvp == k].mean():>5.2f}" for k in kvps), flush=True)


def main() -> int:
    from OsteoAILib.vbmd_model.infer import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default models/vbmd-mlp)")
    ap.add_argument("--cache", required=True, help="the per-phantom feature cache train-vbmd built")
    ap.add_argument("--epochs", type=int, default=600, help="epochs of each privileged-information MLP")
    ap.add_argument("--skip-privileged", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = load_model(args.model)
    tab = table(model, args.cache)
    print(f"model {model.tag}; {tab['y'].size} level rows of {len(tab['params'])} phantoms from {args.cache}\n")
    by_group(tab)
    if not args.skip_privileged:
        privileged(tab, args.epochs)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
