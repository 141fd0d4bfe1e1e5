"""k-means over one batch of superpixel features: scikit-learn's KMeans vs ours (torch), same K and iterations;
and ours with the points padded to a fixed count (``padding``) or replayed as CUDA graphs (``graphs``)."""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from common import interleaved_median_times, median_time, table
from sklearn.cluster import KMeans

from r2o_pretrain.model.kmeans import kmeans, kmeans_with_iterations
from r2o_pretrain.model.kmeans_graphs import KMeansGraphs
from r2o_pretrain.model.refiner import padded_point_count


def _points(n: int, dim: int, k: int, separation: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(k, dim, generator=g)[torch.randint(k, (n,), generator=g)]
    return F.normalize(torch.randn(n, dim, generator=g) + separation * planted, dim=1)


def run(n: int = 3200, dim: int = 256, k: int = 16, iters: int = 10, device: str = "cpu") -> list[list[str]]:
    x = _points(n, dim, k)
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


def padding(
    batch: int = 32, slots: int = 100, dim: int = 1024, ks: tuple[int, ...] = (16, 128), device: str = "cpu"
) -> list[list[str]]:
    """To convergence (at most 200 iterations), greedy seeding: unpadded vs padded to ``padded_point_count``
    (what the graphs need); on a GPU also the graphs (``model.kmeans_cuda_graphs=auto``) over the padded
    points. On the CPU the padded result is checked to be bitwise the unpadded one."""
    n = batch * slots - batch // 2  # a few ids missing, as the exact pooling leaves them out
    total = padded_point_count(batch, n)
    x = _points(n, dim, 16, separation=0.3).to(device)  # weak structure: tens of Lloyd iterations
    xp = F.pad(x, (0, 0, 0, total - n))
    rows = []
    for k in ks:
        graphs = KMeansGraphs()

        def call(points, graph=None, k=k):
            def fn():
                out = kmeans_with_iterations(
                    points, k, 200, torch.Generator(device=device).manual_seed(0), num_points=n, graphs=graph
                )
                if device == "cuda":
                    torch.cuda.synchronize()
                return out

            return fn

        fns = {"unpadded": call(x), "padded": call(xp)}
        if device == "cuda":
            fns["graphs"] = call(xp, graphs)
        ref, got = fns["unpadded"](), fns["padded"]()
        same = torch.equal(ref[0], got[0][:n]) and torch.equal(ref[1], got[1]) and ref[2] == got[2]
        t = interleaved_median_times(fns, repeats=5, warmup=1)
        what = f"k-means to convergence ({ref[2]} iters), {n} points padded to {total}, {dim} dims, K={k} ({device})"
        rows.append([what, "unpadded", f"{t['unpadded'] * 1000:.1f} ms", "1.00x (baseline)"])
        rows.append(
            [
                what,
                "padded",
                f"{t['padded'] * 1000:.1f} ms",
                f"{t['padded'] / t['unpadded']:.2f}x; bitwise equal: {same}",
            ]
        )
        if "graphs" in t:
            state = f"fell back: {graphs.failed}" if graphs.failed else f"{graphs.captures} captures"
            g = fns["graphs"]()
            agree = (g[0][:n] == ref[0]).float().mean().item()  # float atomics: eager runs differ too
            rows.append(
                [
                    what,
                    "padded, CUDA graphs",
                    f"{t['graphs'] * 1000:.1f} ms",
                    f"{t['graphs'] / t['unpadded']:.2f}x ({state}; {g[2]} iters, same cluster as eager: {agree:.2%})",
                ]
            )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--ks", type=int, nargs="+", default=[16, 128])
    a = p.parse_args(argv)
    print(table(padding(a.batch, 100, a.dim, tuple(a.ks), a.device), ["measurement", "variant", "time", "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
