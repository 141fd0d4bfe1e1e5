"""Training step time: R2O vs BYOL, same encoder, batch and image size (forward + backward + LARS + EMA)."""

from __future__ import annotations

import torch
from common import median_time

from r2o_pretrain.model.r2o import R2O
from r2o_pretrain.optim import build_optimizer


def make_batch(b: int, view: int, raw: int, segments: int = 100, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    # blocky superpixels (~`segments` per image), like SLIC's label maps
    side = max(1, int(segments**0.5))
    cells = torch.arange(side * side).view(side, side)
    sp = cells.repeat_interleave(raw // side + 1, 0).repeat_interleave(raw // side + 1, 1)[:raw, :raw]
    boxes = torch.tensor([[0.1, 0.05, 0.9, 0.8, 0.0], [0.0, 0.2, 0.7, 1.0, 1.0]])
    return {
        "views": torch.randn(b, 2, 3, view, view, generator=g),
        "boxes": boxes.expand(b, 2, 5).clone(),
        "raw": torch.randn(b, 3, raw, raw, generator=g),
        "superpixels": sp.expand(b, raw, raw).clone(),
    }


def step_time(
    method: str,
    depth: int,
    batch: dict,
    k: int,
    device: str = "cpu",
    repeats: int = 5,
    amp=None,
    channels_last: bool = False,
    hidden: int = 1024,
) -> float:
    torch.manual_seed(0)
    model = R2O(depth=depth, method=method, projector_hidden=hidden, predictor_hidden=hidden).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer([model.online_encoder, model.online_projector, model.predictor])
    for group in opt.param_groups:
        group["lr"] = 0.01
    data = {k_: v.to(device) for k_, v in batch.items()}
    gen = torch.Generator(device=device).manual_seed(0)

    def step():
        ctx = torch.autocast(device, dtype=amp) if amp else torch.autocast(device, enabled=False)
        with ctx:
            out = model(data["views"], data["boxes"], data["raw"], data["superpixels"], k, gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        model.update_target(0.99)
        if device == "cuda":
            torch.cuda.synchronize()

    return median_time(step, repeats=repeats, warmup=2)


def run(depth: int = 18, b: int = 16, view: int = 96, raw: int = 112, k: int = 16) -> list[list[str]]:
    batch = make_batch(b, view, raw)
    t_byol = step_time("byol", depth, batch, k)
    t_r2o = step_time("r2o", depth, batch, k)
    t_detcon = step_time("detcon", depth, batch, k)
    what = f"train step, ResNet-{depth}, batch {b}, views {view}px, raw {raw}px, K={k} (CPU)"
    return [
        [what, "BYOL step", f"{t_byol * 1000:.0f} ms", "1.00x (baseline)"],
        [what, "R2O step", f"{t_r2o * 1000:.0f} ms", f"{t_r2o / t_byol:.2f}x BYOL (target <= 1.10x)"],
        [what, "DetCon step", f"{t_detcon * 1000:.0f} ms", f"{t_detcon / t_byol:.2f}x BYOL"],
    ]
