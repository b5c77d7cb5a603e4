"""Benchmark: the all-pairs similarity engine against the paper's per-pair approach.

The baseline reimplements the paper's code path (thingsvision): per model pair, three HSIC
calls, each building both Gram matrices, checking their symmetry and U-centring them in torch
float32; for RSA, both
RDMs (1 - np.corrcoef) and scipy's Spearman over their upper triangles. For the neighbourhood
metrics it follows the Platonic Representation Hypothesis's code path: per pair, both cosine
Gram matrices, a full descending argsort of each row (mutual / Jaccard k-NN) or top-k of each
row (CKNNA), dense n × n neighbour masks, and for CKNNA three unbiased HSIC calls each with an
n × n matrix product. For Procrustes, per pair in numpy float64: centring, normalising,
zero-padding, XᵀY and its nuclear norm (an SVD). For the measures added after the paper's
(`--metrics new`), the reference implementation of tests/test_measures.py (BENCHMARK_REFERENCES: the
pinned reference packages of requirements-test.txt, which must be installed, or float64 code of the
definition), and for second-order cosine and rank similarity ReSi's code path (scikit-learn's
cosine NearestNeighbors and pairwise distances, a Python loop over samples). The baseline is timed on
a few pairs and extrapolated to all M(M-1)/2 pairs. Both run in this process on the same features.
The last column says whether a measure's maths batches (every pair from statistics computed once per
model, with no per-pair decomposition, sort or assignment) and if not, why.

    python benchmarks/similarity.py [--models 16 --n 5000 --d 768 --baseline-pairs 2]
    python benchmarks/similarity.py --metrics new --n 2000
    python benchmarks/similarity.py --device cuda --baseline-pairs 0 --json similarity.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import threading
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from simcon.metrics import MetricSpec, get_metric, metric_names
from simcon.similarity import compute_similarity
from simcon.similarity import kernel as kernel_module

DEFAULT_METRICS = ("cka_linear_unbiased", "cka_rbf0.4_unbiased", "rsa_correlation_spearman")
PAPER_AND_NEIGHBOUR_METRICS = (
    *(f"cka_{k}_{e}" for k in ("linear", "rbf0.2", "rbf0.4", "rbf0.6", "rbf0.8") for e in ("unbiased", "biased")),
    "rsa_correlation_spearman",
    "rsa_correlation_pearson",
    "mutual_knn10",
    "jaccard_knn10",
    "cknna10",
    "procrustes",
)
NEW_METRICS = tuple(name for name in metric_names() if name not in PAPER_AND_NEIGHBOUR_METRICS)
"""The registered measures added after the paper's and the neighbourhood metrics: `--metrics new`."""


def per_pair_work(spec: MetricSpec) -> str:
    """Why a measure's maths does not batch (each pair needs its own decomposition, sort or assignment); "" when
    every pair follows from statistics computed once per model by products alone."""
    if spec.family in ("procrustes", "shape"):
        return "per-pair spectrum of XᵀY (eigenvalues or SVD)"
    if spec.family == "cca" and spec.statistic != "eigenspace_overlap":
        return "per-pair singular values of U_XᵀU_Y"
    if spec.family == "matching":
        return "per-pair assignment / transport"
    if spec.rdm_comparison == "kendall":
        return "per-pair O(N log N) count of discordant entries"
    return ""


def random_features(models: int, n: int, d: int, seed: int) -> dict[str, np.ndarray]:
    """L2-normalised float32 features sharing a low-dimensional signal, as real models do."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 32))
    features = {}
    for index in range(models):
        x = latent @ rng.standard_normal((32, d)) + 2.0 * rng.standard_normal((n, d))
        x = np.maximum(x, 0) if index % 2 else x
        features[f"model{index:02d}"] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return features


def matmul_peak_gflops(size: int = 4096, repeats: int = 3, device: str = "cpu") -> float:
    """Best float32 square-matmul rate of torch on this device (torch's own float32 matmul settings)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)

    def seconds() -> float:
        start = time.perf_counter()
        a @ b
        if a.is_cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    seconds()
    best = min(seconds() for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def baseline_cka(x: torch.Tensor, y: torch.Tensor, sigma: float | None) -> float:
    """Unbiased CKA of one pair as the paper's code computes it."""

    def gram(z: torch.Tensor) -> torch.Tensor:
        g = z @ z.T
        if sigma is None:
            return g
        distances = torch.diag(g) - g + (torch.diag(g) - g).T
        return torch.exp(distances * (-0.5 / sigma**2))

    def u_centre(k: torch.Tensor) -> torch.Tensor:
        if not torch.allclose(k, k.T, rtol=1e-03, atol=1e-04):
            raise ValueError("Gram matrix is not symmetric")
        n = k.shape[0]
        k.fill_diagonal_(0.0)
        means = k.sum(dim=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        k -= means[:, None]
        k -= means[None, :]
        k.fill_diagonal_(0.0)
        return k

    def hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sum(u_centre(gram(a)) * u_centre(gram(b)))

    return float(hsic(x, y) / torch.sqrt(hsic(x, x) * hsic(y, y)))


def baseline_rsa(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman RSA of one pair as the paper's code computes it."""
    upper = np.triu_indices(len(x), k=1)
    rdm_x, rdm_y = 1 - np.corrcoef(x), 1 - np.corrcoef(y)
    return float(scipy.stats.spearmanr(rdm_x[upper], rdm_y[upper])[0])


def baseline_neighbour_masks(z: torch.Tensor, k: int) -> torch.Tensor:
    """Dense n × n mask of each sample's k cosine nearest neighbours, by sorting every row."""
    unit = z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
    cosines = (unit @ unit.T).fill_diagonal_(-1e8)
    neighbours = cosines.argsort(dim=1, descending=True)[:, :k]
    return torch.zeros_like(cosines).scatter_(1, neighbours, 1.0)


def baseline_knn(x: torch.Tensor, y: torch.Tensor, k: int, jaccard: bool) -> float:
    """Mutual (or Jaccard) k-NN of one pair as the PRH's code computes it."""
    mask_x, mask_y = baseline_neighbour_masks(x, k), baseline_neighbour_masks(y, k)
    shared = (mask_x * mask_y).sum(dim=1)
    if not jaccard:
        return float((shared / k).mean())
    return float((shared / torch.clamp(mask_x + mask_y, max=1).sum(dim=1)).mean())


def baseline_cknna(x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """CKNNA of one pair as the PRH's code computes it (unbiased), with the registered
    symmetrisation: the reverse order's 1ᵀBA1 added from row and column sums."""
    n = x.shape[0]

    def hsic(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = a.clone().fill_diagonal_(0), b.clone().fill_diagonal_(0)
        common = torch.sum(a * b.T) + a.sum() * b.sum() / ((n - 1) * (n - 2))
        return common, torch.sum(a @ b), b.sum(dim=0) @ a.sum(dim=1)

    def masked(kernel_a: torch.Tensor, kernel_b: torch.Tensor) -> float:
        masks = []
        for kernel in (kernel_a, kernel_b):
            top = torch.topk(kernel.clone().fill_diagonal_(-math.inf), k, dim=1).indices
            masks.append(torch.zeros(n, n).scatter_(1, top, 1.0))
        mask = masks[0] * masks[1]
        common, forward, backward = hsic(mask * kernel_a, mask * kernel_b)
        return float(common - (forward + backward) / (n - 2)) / (n * (n - 3))

    unit_x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True)
    unit_y = y / torch.linalg.vector_norm(y, dim=1, keepdim=True)
    kernel_x, kernel_y = unit_x @ unit_x.T, unit_y @ unit_y.T
    return masked(kernel_x, kernel_y) / math.sqrt(masked(kernel_x, kernel_x) * masked(kernel_y, kernel_y))


def baseline_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """Orthogonal Procrustes similarity of one pair in numpy float64."""
    width = max(x.shape[1], y.shape[1])
    shapes = []
    for z in (x, y):
        centred = z.astype(np.float64) - z.mean(axis=0, dtype=np.float64)
        padded = np.zeros((len(z), width))
        padded[:, : z.shape[1]] = centred / np.linalg.norm(centred)
        shapes.append(padded)
    return float(np.linalg.norm(shapes[0].T @ shapes[1], "nuc"))


def resi_neighbours(z: np.ndarray, k: int) -> np.ndarray:
    """ReSi's top_k_neighbors: scikit-learn's cosine NearestNeighbors with k + 1, the first (the sample) dropped."""
    import sklearn.neighbors

    return sklearn.neighbors.NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(z).kneighbors(z)[1][:, 1:]


def baseline_second_order_cosine(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """ReSi's second_order_cosine_similarity: the cosine distances to the union of both neighbour lists."""
    import scipy.spatial.distance
    import sklearn.metrics

    neighbours_x, neighbours_y = resi_neighbours(x, k), resi_neighbours(y, k)
    distances_x = sklearn.metrics.pairwise_distances(x, metric="cosine")
    distances_y = sklearn.metrics.pairwise_distances(y, metric="cosine")
    return float(
        np.mean(
            [
                1 - scipy.spatial.distance.cosine(distances_x[i, union], distances_y[i, union])
                for i, union in enumerate(list(set(a) | set(b)) for a, b in zip(neighbours_x, neighbours_y))
            ]
        )
    )


def baseline_rank_similarity(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """ReSi's rank_similarity: the neighbour lists' ranks of their shared neighbours."""
    neighbours_x, neighbours_y = resi_neighbours(x, k), resi_neighbours(y, k)
    scores = []
    for row_x, row_y in zip(neighbours_x, neighbours_y):
        shared = set(row_x) & set(row_y)
        if not shared:
            scores.append(0.0)
            continue
        ranks = [(int(np.argwhere(row_x == j)[0][0]) + 1, int(np.argwhere(row_y == j)[0][0]) + 1) for j in shared]
        score = sum(2 / ((1 + abs(a - b)) * (a + b)) for a, b in ranks)
        scores.append(score / sum(1 / t for t in range(1, len(shared) + 1)))
    return float(np.mean(scores))


def baseline_pair_function(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    spec = get_metric(metric)
    if spec.knn_statistic in ("second_order_cosine", "rank"):
        k = spec.neighbours
        function = (
            baseline_second_order_cosine if spec.knn_statistic == "second_order_cosine" else baseline_rank_similarity
        )
        return lambda x, y: function(x.astype(np.float64), y.astype(np.float64), k)
    if metric in NEW_METRICS:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_measures import BENCHMARK_REFERENCES

        return lambda x, y: BENCHMARK_REFERENCES[metric](x.astype(np.float64), y.astype(np.float64))
    if spec.family == "procrustes":
        return baseline_procrustes
    if spec.family == "knn":
        k = spec.neighbours
        if spec.knn_statistic == "cknna":
            return lambda x, y: baseline_cknna(torch.from_numpy(x), torch.from_numpy(y), k)
        jaccard = spec.knn_statistic == "jaccard"
        return lambda x, y: baseline_knn(torch.from_numpy(x), torch.from_numpy(y), k, jaccard)
    if spec.family == "rsa":
        return baseline_rsa
    assert spec.unbiased, "the baseline is the paper's unbiased CKA"
    return lambda x, y: baseline_cka(torch.from_numpy(x), torch.from_numpy(y), spec.sigma)


class PeakRss:
    """Peak resident memory of this process while the block runs, sampled every 5 ms."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._rss()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join()

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


def engine_gflop(metric: str, features: dict[str, np.ndarray]) -> float:
    """Floating-point operations of the engine's matrix products (upper block triangle)."""
    spec = get_metric(metric)
    widths = [x.shape[1] for x in features.values()]
    n, m = next(iter(features.values())).shape[0], len(widths)
    pairs = list(combinations(range(m), 2))
    if spec.family == "knn":
        flops = sum(2 * w * n * n for w in widths)
    elif spec.family in ("procrustes", "shape", "cca", "regression", "matching"):
        flops = sum(
            2 * n * widths[a] * widths[b] + 2 * min(widths[a], widths[b]) ** 2 * max(widths[a], widths[b])
            for a, b in pairs
        )
    elif spec.rdm_comparison in ("spearman", "kendall"):
        flops = sum(2 * w * n * n / 2 for w in widths) + 2 * m * m * n * (n - 1) / 2
    elif spec.kernel == "linear" and kernel_module.linear_strategy(list(features.values()), pairs, m - 1) == "features":
        flops = 2 * n * (sum(widths[a] * widths[b] for a, b in pairs) + sum(w * w for w in widths))
    else:
        flops = sum(2 * w * n * n / 2 for w in widths) + 2 * m * m * n * n / 2
    return flops / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument(
        "--baseline-pairs",
        type=int,
        default=2,
        help="pairs the baseline is timed on before extrapolating (0: no baseline)",
    )
    parser.add_argument(
        "--metrics", nargs="+", default=list(DEFAULT_METRICS), help="metric names, or `new` for NEW_METRICS"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="the engine's device (the baseline runs on the CPU)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--peak-size", type=int, default=4096, help="side of the matmul that measures the peak")
    args = parser.parse_args()
    args.metrics = [name for metric in args.metrics for name in (NEW_METRICS if metric == "new" else [metric])]

    features = random_features(args.models, args.n, args.d, args.seed)
    ids = list(features)
    all_pairs = list(combinations(ids, 2))
    timed_pairs = all_pairs[: args.baseline_pairs]
    peak = matmul_peak_gflops(args.peak_size, device=args.device)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}; engine on {args.device} ({device_name})"
    )
    print(f"features: M={args.models} models, n={args.n}, d={args.d} (float32, L2-normalised)")
    print(f"float32 matmul peak (torch, {args.peak_size}^3, {args.device}): {peak:.1f} GFLOP/s")
    print(f"baseline: timed on {len(timed_pairs)} pair(s), extrapolated to all {len(all_pairs)} pairs")
    print()
    header = (
        f"{'metric':38s} {'baseline s':>11s} {'engine s':>9s} {'speed-up':>9s} "
        f"{'max |diff|':>11s} {'GFLOP/s':>8s} {'% peak':>7s} {'engine peak RSS':>16s}  batches"
    )
    print(header)
    rows = []
    for metric in args.metrics:
        with PeakRss() as memory:
            start = time.perf_counter()
            matrix = compute_similarity(features, metric, device=args.device).matrix
            engine_seconds = time.perf_counter() - start
        if timed_pairs:
            pair_function = baseline_pair_function(metric)
            first, second = timed_pairs[0]
            pair_function(features[first][:50], features[second][:50])  # imports and JIT compilation, not timed
            start = time.perf_counter()
            baseline_values = [pair_function(features[a], features[b]) for a, b in timed_pairs]
            baseline_seconds = (time.perf_counter() - start) / len(timed_pairs) * len(all_pairs)
            difference = max(abs(matrix.loc[a, b] - value) for (a, b), value in zip(timed_pairs, baseline_values))
        else:
            baseline_seconds = difference = math.nan
        rate = engine_gflop(metric, features) / engine_seconds
        print(
            f"{metric:38s} {baseline_seconds:11.1f} {engine_seconds:9.2f} "
            f"{baseline_seconds / engine_seconds:8.0f}x {difference:11.1e} {rate:8.1f} "
            f"{100 * rate / peak:6.0f}% {(memory.peak - memory.start) / 2**30:12.2f} GiB  "
            f"{'no: ' + per_pair_work(get_metric(metric)) if per_pair_work(get_metric(metric)) else 'yes'}",
            flush=True,
        )
        rows.append(
            {
                "metric": metric,
                "pairs": len(all_pairs),
                "engine_seconds": engine_seconds,
                "baseline_seconds": baseline_seconds if timed_pairs else None,
                "max_diff": difference if timed_pairs else None,
                "gflops": rate,
                "peak_fraction": rate / peak,
                "per_pair_work": per_pair_work(get_metric(metric)),
            }
        )
    print()
    print(
        "max |diff|: engine vs baseline on the timed pairs (baseline is torch float32, "
        "float64 for Procrustes and the measures added after the paper's); "
        "GFLOP/s counts the engine's matrix products; engine peak RSS is the increase of "
        "this process's resident memory during the engine call."
    )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "args": vars(args),
                    "device_name": device_name,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "peak_gflops": peak,
                    "rows": rows,
                },
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
