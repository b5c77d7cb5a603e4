"""Benchmark the probe protocol: candidates trained together vs one at a time.

Runs ``simcon.probe.train_probe`` twice on the same synthetic features, once with the
batched trainer (``fit_linear``) and once with one ``torch.nn.Linear`` +
``torch.optim.AdamW`` per candidate (``fit_linear_reference``), and prints wall times,
their ratio, the chosen hyperparameters and test accuracies. Exits 1 when the two disagree
by more than one weight-decay grid step, in learning rate, or by more than 0.5 points of
top-1 accuracy.

    python benchmarks/probe.py                      # n=10,000, d=768, 100 classes
    python benchmarks/probe.py --n 2000 --d 128 --classes 10
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from simcon.probe import ProbeSettings, fit_linear, fit_linear_reference, train_probe


def synthetic_features(
    n: int, n_test: int, d: int, n_classes: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """L2-normalised Gaussian class clusters (train x, train y, test x, test y), float32.

    Class centres share a random low-rank component, so classes overlap unevenly.
    """
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n_classes, 8)) @ rng.normal(size=(8, d))
    centres = rng.normal(size=(n_classes, d)) + shared
    y = rng.integers(0, n_classes, n + n_test)
    x = centres[y] + noise * rng.normal(size=(n + n_test, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x[:n], y[:n], x[n:], y[n:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="train samples")
    parser.add_argument("--n-test", type=int, default=2_000, help="test samples")
    parser.add_argument("--d", type=int, default=768, help="feature dimension")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--noise", type=float, default=15.0, help="within-class spread relative to the centres")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=ProbeSettings.epochs)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = synthetic_features(args.n, args.n_test, args.d, args.classes, args.noise, args.seed)
    settings = ProbeSettings(epochs=args.epochs)
    log_grid = np.log10(settings.weight_decay_grid())
    print(
        f"n={args.n} n_test={args.n_test} d={args.d} classes={args.classes} noise={args.noise} "
        f"epochs={args.epochs} device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"load average={os.getloadavg()[0]:.1f}"
    )
    results, seconds, cpu_seconds = {}, {}, {}
    for label, fit in (("batched", fit_linear), ("one at a time", fit_linear_reference)):
        start, cpu_start = time.perf_counter(), time.process_time()
        results[label] = train_probe(
            *data, seed=args.seed, settings=settings, device=args.device, name=label, progress=args.progress, fit=fit
        )
        seconds[label] = time.perf_counter() - start
        cpu_seconds[label] = time.process_time() - cpu_start
        result = results[label]
        step = int(np.argmin(np.abs(log_grid - math.log10(result["weight_decay"]))))
        top5 = "" if result["top5"] is None else f"  top5={100 * result['top5']:.2f}%"
        print(
            f"{label:>14}: {seconds[label]:6.1f} s wall {cpu_seconds[label]:6.1f} s CPU  "
            f"{len(result['validation'])} candidates  "
            f"lr={result['learning_rate']:g} wd={result['weight_decay']:.3g} (grid step {step})  "
            f"val={100 * result['validation_accuracy']:.2f}%  top1={100 * result['top1']:.2f}%{top5}"
        )
    batched, reference = results["batched"], results["one at a time"]
    ratio = seconds["one at a time"] / seconds["batched"]
    cpu_ratio = cpu_seconds["one at a time"] / cpu_seconds["batched"]
    wd_steps = abs(np.log10(batched["weight_decay"] / reference["weight_decay"])) / (log_grid[1] - log_grid[0])
    top1_points = 100 * abs(batched["top1"] - reference["top1"])
    print(f"speed-up: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU time  (load average at the end: {os.getloadavg()[0]:.1f})")
    print(f"weight decays {round(wd_steps)} grid step(s) apart; top-1 differs by {top1_points:.2f} points")
    agree = batched["learning_rate"] == reference["learning_rate"] and wd_steps <= 1.01 and top1_points <= 0.5
    print("agree" if agree else "DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
