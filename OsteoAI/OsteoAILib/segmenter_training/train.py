"""Training loop: random patches, GPU-side augmentation, CE + Dice on the semantic classes and CE on
the level votes. Seeded; the learning rate follows a cosine over ``iters`` (or over ``minutes`` when
the wall-clock budget ends first, which the log records)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from OsteoAISegmentLib.ai.labels import IGNORE, N_SEM
from OsteoAISegmentLib.ai.network import DEFAULT_CONFIG, build_network

from .dataset import VERT_ANY, load_sample


class Pool:
    """Samples kept on the training device, with candidate patch centres on the spine."""

    def __init__(self, paths, device, rng):
        self.items = []
        for p in paths:
            s = load_sample(p)
            sem, lvl = s["sem"], s["lvl"]
            spine = np.argwhere((lvl != IGNORE) | (sem == 1) | (sem == 2) | (sem == VERT_ANY))
            if len(spine) > 4000:
                spine = spine[rng.choice(len(spine), 4000, replace=False)]
            self.items.append(
                {
                    "name": Path(p).stem,
                    "image": torch.from_numpy(s["image"].astype(np.float32)).to(device),
                    "sem": torch.from_numpy(sem).to(device),
                    "lvl": torch.from_numpy(lvl).to(device),
                    "centres": spine if len(spine) else None,
                }
            )

    def __len__(self):
        return len(self.items)


def crop(item, patch, rng):
    shp = item["image"].shape
    if item["centres"] is not None and rng.random() < 0.85:
        c = item["centres"][rng.integers(len(item["centres"]))].astype(int)
        c = c + rng.integers(-np.array(patch) // 3, np.array(patch) // 3 + 1)
    else:
        c = np.array([rng.integers(0, s) for s in shp])
    lo = c - np.array(patch) // 2
    src, dst = [], []
    for a in range(3):
        s0, s1 = max(lo[a], 0), min(lo[a] + patch[a], shp[a])
        if s1 <= s0:  # centre far outside on this axis: take the middle
            s0, s1 = 0, min(patch[a], shp[a])
            lo[a] = 0
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo[a], s1 - lo[a]))
    dev = item["image"].device
    img = torch.full(patch, -1.0, device=dev)
    sem = torch.zeros(patch, dtype=torch.uint8, device=dev)
    lvl = torch.full(patch, IGNORE, dtype=torch.uint8, device=dev)
    img[tuple(dst)] = item["image"][tuple(src)]
    sem[tuple(dst)] = item["sem"][tuple(src)]
    lvl[tuple(dst)] = item["lvl"][tuple(src)]
    return img, sem, lvl


def augment(img, sem, lvl, gen):
    """Batch augmentation on the device: affine (rotation, scale, left-right flip), thick slices,
    blur, HU gain/offset and noise. img (B,D,H,W) float; sem/lvl uint8."""
    B = img.shape[0]
    dev = img.device

    def u(lo, hi, n=B):
        return torch.rand(n, device=dev, generator=gen) * (hi - lo) + lo

    ang = [u(-0.17, 0.17), u(-0.08, 0.08), u(-0.08, 0.08)]
    scale = u(0.85, 1.15)[:, None] * torch.stack([u(0.95, 1.05), u(0.95, 1.05), u(0.95, 1.05)], 1)
    th = torch.zeros(B, 3, 4, device=dev)
    for b in range(B):
        a, bb, c = ang[0][b], ang[1][b], ang[2][b]
        rx = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]], device=dev)
        ry = torch.tensor([[math.cos(bb), 0, math.sin(bb)], [0, 1, 0], [-math.sin(bb), 0, math.cos(bb)]], device=dev)
        rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]], device=dev)
        m = rx @ ry @ rz @ torch.diag(scale[b])
        th[b, :, :3] = m
    # grid axes are (x=W=i, y=H=j, z=D=k): flip x = left-right mirror of the canonical volume
    flip = (torch.rand(B, device=dev, generator=gen) < 0.5).float() * -2 + 1
    th[:, 0, :] = th[:, 0, :] * flip[:, None]
    grid = F.affine_grid(th, (B, 1, *img.shape[1:]), align_corners=False)
    img = F.grid_sample((img + 1)[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0] - 1
    kw = {"mode": "nearest", "padding_mode": "zeros", "align_corners": False}
    semf = F.grid_sample(sem[:, None].float(), grid, **kw)[:, 0]
    lvlf = F.grid_sample(lvl[:, None].float() + 1, grid, **kw)[:, 0]
    sem = semf.round().to(torch.uint8)
    lvl = torch.where(lvlf > 0, lvlf - 1, torch.full_like(lvlf, IGNORE)).round().to(torch.uint8)
    # thick slices (4-5 mm acquisitions) and soft kernels
    for b in range(B):
        r = float(torch.rand(1, device=dev, generator=gen))
        if r < 0.25:
            f = 2 if r < 0.15 else 3
            x = img[b][None, None]
            d = x.shape[2]
            x = F.avg_pool3d(x, (f, 1, 1), ceil_mode=True)
            img[b] = F.interpolate(x, size=(d, *x.shape[3:]), mode="trilinear", align_corners=False)[0, 0]
        elif r < 0.4:
            img[b] = F.avg_pool3d(img[b][None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    # bone contrast: real trabecular bone (osteoporotic, fatty marrow) is often fainter than the
    # phantoms'; scaling what lies above soft tissue keeps the network off exact bone HU
    g_bone = u(0.6, 1.25)[:, None, None, None]
    pivot = 0.1  # ~100 HU
    img = torch.where(img > pivot, pivot + (img - pivot) * g_bone, img)
    gain = u(0.9, 1.1)[:, None, None, None]
    off = u(-0.05, 0.05)[:, None, None, None]
    sigma = u(0.0, 0.06)[:, None, None, None]
    img = (img + 1) * gain - 1 + off
    noise = torch.randn(img.shape, device=dev, generator=gen)
    # real CT noise is spatially correlated (reconstruction kernel): half the batch gets blotchy noise
    smooth = F.avg_pool3d(noise[:, None], 3, stride=1, padding=1)[:, 0] * 5.2  # back to unit std
    pick = (torch.rand(B, device=dev, generator=gen) < 0.5)[:, None, None, None]
    img = img + torch.where(pick, smooth, noise) * sigma
    # tight fields of view (a lumbar crop ending behind the laminae): a quarter of the patches lose
    # a slab on one side of j or i to the air padding that inference uses beyond the scan
    D, H, W = img.shape[1:]
    for b in range(B):
        if float(torch.rand(1, device=dev, generator=gen)) >= 0.25:
            continue
        ax = 1 if float(torch.rand(1, device=dev, generator=gen)) < 0.5 else 2
        n = (H, W)[ax - 1]
        cut = int(n * (0.2 + 0.2 * float(torch.rand(1, device=dev, generator=gen))))
        sl = [b, slice(None), slice(None), slice(None)]
        sl[ax] = slice(0, cut) if float(torch.rand(1, device=dev, generator=gen)) < 0.5 else slice(n - cut, n)
        img[tuple(sl)] = -1.0
        sem[tuple(sl)] = IGNORE
        lvl[tuple(sl)] = IGNORE
    return img, sem, lvl


def losses(logits, sem, lvl, weight=None):
    """weight: (B,) per-sample loss weight (pseudo-labelled patches count less)."""
    sem = sem.long()
    lvl = lvl.long()
    B = sem.shape[0]
    sw = (torch.ones(B, device=sem.device) if weight is None else weight.float())[:, None, None, None]
    sl = logits[:, :N_SEM].float()
    logp = F.log_softmax(sl, dim=1)
    valid = sem < N_SEM
    tgt = torch.where(valid, sem, torch.zeros_like(sem))
    nll = -logp.gather(1, tgt[:, None])[:, 0]
    # background is ~97% of a patch: down-weight it so the thin classes (posterior elements, discs,
    # ribs) are not drowned
    # sample weights scale the sums but not the normalisers: a pseudo-labelled patch counts less
    w = torch.where(tgt == 0, 0.25, 1.0) * valid
    ce = (nll * w * sw).sum() / w.sum().clamp(min=1)
    anyv = sem == VERT_ANY
    any_loss = (-(torch.logsumexp(logp[:, 1:3], dim=1)) * anyv * sw).sum() / anyv.sum().clamp(min=1)
    p = logp.exp()
    vw = valid[:, None] * sw[:, None]
    oh = F.one_hot(tgt, N_SEM).permute(0, 4, 1, 2, 3).float() * vw
    pv = p * vw
    inter = (pv * oh).sum(dim=(0, 2, 3, 4))[1:]
    den = (pv + oh).sum(dim=(0, 2, 3, 4))[1:]
    present = oh.sum(dim=(0, 2, 3, 4))[1:] > 0
    dsc = (2 * inter + 1) / (den + 1)
    dice = 1 - (dsc[present].mean() if present.any() else dsc.mean())
    ll = logits[:, N_SEM:].float()
    lv = lvl != IGNORE
    if lv.any():
        lnll = F.cross_entropy(ll, torch.where(lv, lvl, torch.zeros_like(lvl)), reduction="none")
        lvl_ce = (lnll * lv * sw).sum() / lv.sum().clamp(min=1)
    else:
        lvl_ce = ll.sum() * 0
    total = ce + dice + 0.5 * any_loss + 0.5 * lvl_ce
    return total, {k: float(v.detach()) for k, v in (("ce", ce), ("dice", dice), ("any", any_loss), ("lvl", lvl_ce))}


def train(
    data_dir: Path,
    out_path: Path,
    real_names: list[str],
    iters: int = 3000,
    minutes: float = 1e9,
    batch: int = 4,
    patch=(128, 112, 128),
    lr: float = 2e-3,
    seed: int = 0,
    device: str = "cuda",
    p_real: float = 0.35,
    config: dict | None = None,
    init: Path | None = None,
    log=print,
    pseudo="all",
    p_pseudo: float = 0.25,
    pseudo_weight: float = 0.5,
) -> dict:
    """pseudo: 'all', 'none' or a list of names of ``pseudo_<name>.npz`` samples (classical labels
    on unlabelled real CTs), drawn with probability ``p_pseudo`` and weighted ``pseudo_weight``."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    data_dir = Path(data_dir)
    ph_paths = sorted(data_dir.glob("phantom_*.npz"))
    real_paths = [data_dir / f"real_{n}.npz" for n in real_names]
    if pseudo == "all":
        ps_paths = sorted(data_dir.glob("pseudo_*.npz"))
    elif pseudo in ("none", "", None):
        ps_paths = []
    else:
        ps_paths = [data_dir / f"pseudo_{n}.npz" for n in pseudo]
    for p in real_paths + ps_paths:
        if not p.exists():
            raise FileNotFoundError(p)
    phantoms = Pool(ph_paths, device, rng)
    reals = Pool(real_paths, device, rng)
    pseudos = Pool(ps_paths, device, rng)
    if not len(phantoms) and not len(reals) and not len(pseudos):
        raise FileNotFoundError(f"no training samples in {data_dir}")
    log(f"samples: {len(phantoms)} phantoms, real: {real_names}, pseudo: {[p.stem for p in ps_paths]}")
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    net = build_network(cfg)
    if init:  # continue from earlier weights (a second, shorter run)
        net.load_state_dict(torch.load(init, map_location="cpu", weights_only=True))
        log(f"initialised from {init}")
    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-5)
    t0 = time.time()
    hist = []
    it = 0
    use_amp = device.startswith("cuda")
    while it < iters:
        frac = max(it / iters, (time.time() - t0) / (60 * minutes))
        if frac >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac))) * min(1.0, (it + 1) / 100)
        items, wts = [], []
        for _ in range(batch):
            r = rng.random()
            if len(reals) and (r < p_real or not (len(phantoms) or len(pseudos))):
                pool, wt = reals, 1.0
            elif len(pseudos) and (r < p_real + p_pseudo or not len(phantoms)):
                pool, wt = pseudos, pseudo_weight
            else:
                pool, wt = phantoms, 1.0
            items.append(pool.items[rng.integers(len(pool))])
            wts.append(wt)
        crops = [crop(x, patch, rng) for x in items]
        img = torch.stack([c[0] for c in crops])
        sem = torch.stack([c[1] for c in crops])
        lvl = torch.stack([c[2] for c in crops])
        img, sem, lvl = augment(img, sem, lvl, gen)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            logits = net(img[:, None])
        loss, parts = losses(logits, sem, lvl, torch.tensor(wts, device=img.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        it += 1
        hist.append(float(loss.detach()))
        if it % 50 == 0 or it == 1:
            log(
                f"it {it} loss {np.mean(hist[-50:]):.4f} "
                + " ".join(f"{k} {v:.3f}" for k, v in parts.items())
                + f" lr {opt.param_groups[0]['lr']:.2e} t {time.time() - t0:.0f}s"
            )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save(state, out_path)
    info = {
        "iterations": it,
        "seconds": round(time.time() - t0, 1),
        "final_loss": float(np.mean(hist[-50:])),
        "phantoms": len(phantoms),
        "real": real_names,
        "pseudo": [p.stem for p in ps_paths],
        "p_real": p_real,
        "p_pseudo": p_pseudo if len(pseudos) else 0.0,
        "pseudo_weight": pseudo_weight,
        "batch": batch,
        "patch": list(patch),
        "lr": lr,
        "seed": seed,
        "network": cfg,
        "init": str(init) if init else None,
    }
    out_path.with_suffix(".train.json").write_text(json.dumps(info, indent=2))
    log(f"saved {out_path} after {it} iterations, {info['seconds']} s")
    return info
