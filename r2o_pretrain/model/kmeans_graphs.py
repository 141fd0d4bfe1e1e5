"""The k-means's seeding and Lloyd blocks replayed as CUDA graphs: no launch overhead on a GPU.

Eagerly, the greedy seeding is K − 1 sequential steps of ~8 small kernels and a Lloyd block 8 iterations
of ~10, so the GPU waits for the host that launches them. A CUDA graph (``torch.cuda.CUDAGraph``)
records one such sequence once and replays it with a single launch. What makes that possible is in
``kmeans.py``: the points have a fixed count per step shape (padding, exact), the random numbers are
drawn before the seeding, and a block reads nothing back to the host (its ``changed`` flags are read
after it, once).

``KMeansGraphs`` keeps, in a small LRU cache, one static copy of the points per (points, dims) and one
captured graph per (points, K, dims, candidates per centre, padding, block length). With ``check`` (the
``auto`` mode), the first capture of each graph is compared with the eager functions on the same inputs;
if a capture fails or differs, one warning is logged and the clustering runs eagerly from then on.
The comparison: the seeding's centres exactly (its kernels have no atomics); a block's assignment on
≥ 99.9% of the points and its inertia within 1e-3 relative (its per-cluster sums are float atomics on a
GPU, whose order varies from run to run, eager or not, so near-ties may fall either way; a wrong replay
is far off).

Not measured in this repository's sessions on a GPU yet (docs/benchmarks.md, "GPU"): see there.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

import torch

from .kmeans import EagerSteps, assign_points, greedy_seeding, lloyd_block, squared_distances

logger = logging.getLogger(__name__)

CUDA_GRAPH_MODES = ("auto", "off")


class GraphCaptureMismatch(RuntimeError):
    """A captured graph's replay did not give the eager result on the same inputs."""


class _Graph:
    """One captured function: static inputs (copied into before a replay) and static outputs."""

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]], inputs: dict[str, torch.Tensor]) -> None:
        self.inputs = {name: t.clone() for name, t in inputs.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture (allocator, cuBLAS handles)
            fn(**self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the loader's pin-memory thread may call CUDA meanwhile; that must not break the capture
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = fn(**self.inputs)

    def __call__(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for name, t in inputs.items():
            self.inputs[name].copy_(t)
        self.graph.replay()
        return self.outputs


class _Points:
    """The static copy of one shape of points and the graphs captured over it (they read these buffers)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.buffers = {name: t.clone() for name, t in tensors.items()}
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, t in tensors.items():
            self.buffers[name].copy_(t)


class KMeansGraphs:
    """Cache of captured k-means graphs (see the module docstring); ``steps(...)`` is what
    ``kmeans.kmeans_with_iterations(graphs=...)`` calls. Falls back to eager for good after a failure.

    ``max_shapes`` shapes of points are kept (each with a static copy of its points), and per shape
    ``max_graphs`` graphs (the seeding and a block per K: the curriculum changes K about once an epoch).
    """

    def __init__(self, check: bool = True, max_shapes: int = 4, max_graphs: int = 8) -> None:
        self.check = check
        self.max_shapes, self.max_graphs = max_shapes, max_graphs
        self.shapes: OrderedDict[tuple, _Points] = OrderedDict()
        self.failed: str | None = None  # why the graphs were given up (None: in use)
        self.captures = 0
        self.replays = 0

    def __getstate__(self) -> dict:
        """A copy (``copy.deepcopy`` of the model, pickling) starts with an empty cache: captured graphs
        cannot be copied, and are recaptured on first use."""
        return {**self.__dict__, "shapes": OrderedDict(), "captures": 0, "replays": 0}

    def steps(
        self, x: torch.Tensor, x_sq: torch.Tensor, valid: torch.Tensor | None, last: torch.Tensor | None
    ) -> EagerSteps | GraphSteps:
        if self.failed is not None or x.device.type != "cuda":
            return EagerSteps(x, x_sq, valid, last)
        if valid is None:  # the graphs always take the padding tensors: "every point is real"
            valid = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            last = torch.full((), x.shape[0] - 1, dtype=torch.long, device=x.device)
        tensors = {"x": x, "x_sq": x_sq, "valid": valid, "last": last}
        key = (tuple(x.shape), x.dtype, x.device)
        points = self.shapes.pop(key, None)
        if points is None:
            points = _Points(tensors)
        else:
            points.load(tensors)
        self.shapes[key] = points
        while len(self.shapes) > self.max_shapes:
            self.shapes.popitem(last=False)
        return GraphSteps(self, points, EagerSteps(x, x_sq, valid, last))

    def graph(
        self, points: _Points, key: tuple, fn: Callable[..., tuple[torch.Tensor, ...]], inputs: dict[str, torch.Tensor]
    ) -> tuple[_Graph, bool]:
        """The cached graph of ``key`` over ``points`` (captured from ``fn`` on ``inputs`` if new):
        (graph, newly captured)."""
        g = points.graphs.pop(key, None)
        new = g is None
        if new:
            g = _Graph(fn, inputs)
            self.captures += 1
        points.graphs[key] = g
        while len(points.graphs) > self.max_graphs:
            points.graphs.popitem(last=False)
        return g, new

    def give_up(self, why: str) -> None:
        self.failed = why
        self.shapes.clear()
        logger.warning("k-means CUDA graphs off from now on (model.kmeans_cuda_graphs=auto): %s; running eagerly", why)


class GraphSteps:
    """``KMeansSteps`` by graph replay over the static points ``buffers`` (eager on any failure)."""

    def __init__(self, owner: KMeansGraphs, points: _Points, eager: EagerSteps) -> None:
        self.owner, self.points, self.buffers, self.eager = owner, points, points.buffers, eager

    def _run(self, key: tuple, fn, inputs: dict, reference: Callable[[], tuple], same: Callable) -> tuple | None:
        if self.owner.failed is not None:
            return None
        stream = torch.cuda.current_stream() if torch.cuda.is_available() else None
        try:
            g, new = self.owner.graph(self.points, key, fn, inputs)
            out = tuple(t.clone() for t in g(**inputs))
            self.owner.replays += 1
            if new and self.owner.check:
                why = same(out, reference())
                if why:
                    raise GraphCaptureMismatch(why)
            return out
        except Exception as exc:  # noqa: BLE001 - any capture/replay failure means: run eagerly
            # torch.cuda.graph's __exit__ leaves its side stream current when capture_end raises: restore ours
            if stream is not None:
                torch.cuda.set_stream(stream)
            self.owner.give_up(f"{key[0]} graph: {type(exc).__name__}: {exc}")
            return None

    def _inertia(self, centres: torch.Tensor) -> float:
        """Σ over the real points of the squared distance to the nearest of ``centres`` (a host read)."""
        b = self.buffers
        d = squared_distances(b["x"], b["x_sq"], centres).min(1).values
        return float(torch.where(b["valid"], d, torch.zeros_like(d)).sum())

    def seeding(self, k: int, first: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.buffers

        def fn(first: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            chosen = greedy_seeding(b["x"], k, first, uniforms, b["x_sq"], b["valid"], b["last"])
            centres = b["x"].index_select(0, chosen)
            return centres, assign_points(b["x"], b["x_sq"], centres, b["valid"])

        def same(out: tuple, ref: tuple) -> str:
            return "" if all(torch.equal(o, r) for o, r in zip(out, ref)) else "seeding differs from eager"

        key = ("seeding", k, uniforms.shape[1])
        out = self._run(
            key, fn, {"first": first, "uniforms": uniforms}, lambda: self.eager.seeding(k, first, uniforms), same
        )
        return out if out is not None else self.eager.seeding(k, first, uniforms)

    def block(
        self, centres: torch.Tensor, assign: torch.Tensor, steps: int, stop_at_fixed_point: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = self.buffers

        def fn(centres: torch.Tensor, assign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return lloyd_block(b["x"], b["x_sq"], b["valid"], centres, assign, steps, stop_at_fixed_point)

        def same(out: tuple, ref: tuple) -> str:
            agree = (out[1] == ref[1]).float().mean().item()
            mine, theirs = self._inertia(out[0]), self._inertia(ref[0])
            close = abs(mine - theirs) <= 1e-3 * max(abs(theirs), 1e-12)
            if agree >= 0.999 and close:
                return ""
            return f"block differs from eager (same cluster for {agree:.4%} of the points, inertia {mine:.6g} vs {theirs:.6g})"

        key = ("lloyd", centres.shape[0], steps, stop_at_fixed_point)
        inputs = {"centres": centres, "assign": assign}
        out = self._run(key, fn, inputs, lambda: self.eager.block(centres, assign, steps, stop_at_fixed_point), same)
        return out if out is not None else self.eager.block(centres, assign, steps, stop_at_fixed_point)
