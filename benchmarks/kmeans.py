"""k-means over one batch of superpixel features: scikit-learn's KMeans vs ours (torch), same K and iterations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import median_time
from sklearn.cluster import KMeans

from r2o_pretrain.model.kmeans import kmeans


def run(n: int = 3200, dim: int = 256, k: int = 16, iters: int = 10, device: str = "cpu") -> list[list[str]]:
    g = torch.Generator().manual_seed(0)
    x = F.normalize(
        torch.randn(n, dim, generator=g) + 2 * torch.randn(k, dim, generator=g)[torch.randint(k, (n,), generator=g)],
        dim=1,
    )
    xn = x.numpy()

    def sk():
        KMeans(k, init="k-means++", n_init=1, max_iter=iters, tol=0.0, random_state=0).fit(xn)

    xd = x.to(device)
    gen = torch.Generator(device=device).manual_seed(0)

    def ours():
        kmeans(xd, k, iters, gen)
        if device == "cuda":
            torch.cuda.synchronize()

    t_sk = median_time(sk, repeats=5)
    t_ours = median_time(ours, repeats=5)
    what = f"k-means, {n} superpixels x {dim} dims (batch 32 x 100, ResNet-18 c4), K={k}, {iters} iters ({device})"
    return [
        [what, "scikit-learn KMeans", f"{t_sk * 1000:.1f} ms", "1.00x (baseline)"],
        [what, "ours (torch, in the step)", f"{t_ours * 1000:.1f} ms", f"{t_sk / t_ours:.2f}x faster"],
    ]
