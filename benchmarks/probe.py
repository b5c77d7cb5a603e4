"""Benchmark the probe protocol: candidates trained together vs one at a time.

Runs ``simcon.probe.train_probe`` (``--search``: the code's weight-decay search or the
paper text's) on the same synthetic features: with one
``torch.nn.Linear`` + ``torch.optim.AdamW`` per candidate (``fit_linear_reference``,
float32: the reference), the same fed by a torch ``DataLoader`` over a per-sample feature
dataset as the paper's code is (``paper-loader``: same batches, same results, the paper's
data path), and with the batched trainer (``fit_linear``) searching in float32
and in bfloat16 (``ProbeSettings.search_precision``; the final retrain is float32 in every
variant). Prints wall and CPU times, each batched variant's speed-up over the reference, the
chosen hyperparameters and test accuracies. Exits 1 when a batched variant disagrees with
the reference in learning rate, by more than one weight-decay grid step, or by more than
0.5 points of top-1 accuracy.

    python benchmarks/probe.py                      # n=10,000, d=768, 100 classes
    python benchmarks/probe.py --n 2000 --d 128 --classes 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

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


def float32_validation_accuracy(data: tuple, seed: int, epochs: int, lr: float, wd: float) -> float:
    """Validation accuracy of the float32 batched trainer at one (lr, wd), on the protocol's split."""
    settings = ProbeSettings(  # the text's search allows a two-point grid around any value
        search="text",
        epochs=epochs,
        learning_rates=(lr,),
        weight_decay_min=wd,
        weight_decay_max=wd * (1 + 1e-9),
        weight_decay_steps=1,
    )
    return train_probe(*data, seed=seed, settings=settings)["validation"][0]["accuracy"]


class FeatureDataset(Dataset):
    """Features and labels read one sample at a time, as the paper's code stores them
    (sim_consistency/data/feature_datasets.py)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def paper_loader(x: torch.Tensor, y: torch.Tensor, batches: list[torch.Tensor]) -> DataLoader:
    """The batches through a torch DataLoader over a FeatureDataset, as the paper's code feeds each
    candidate's training (sim_consistency/data/data_loader.py; its shuffled order is replaced by the
    protocol's batches, so the results equal the reference's)."""
    return DataLoader(FeatureDataset(x, y), batch_sampler=[batch.tolist() for batch in batches])


VARIANTS = {
    "paper-loader": (partial(fit_linear_reference, loader=paper_loader), "float32"),
    "reference": (fit_linear_reference, "float32"),
    "batched-float32": (fit_linear, "float32"),
    "batched-bfloat16": (fit_linear, "bfloat16"),
}
"""Name: (trainer, search precision)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="train samples")
    parser.add_argument("--n-test", type=int, default=2_000, help="test samples")
    parser.add_argument("--d", type=int, default=768, help="feature dimension")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--noise", type=float, default=15.0, help="within-class spread relative to the centres")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=ProbeSettings.epochs)
    parser.add_argument("--search", choices=["code", "text"], default=ProbeSettings.search, help="weight-decay search")
    parser.add_argument("--memory-budget", type=int, help="bytes a search round may use (default: free memory)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", help="write every variant's train_probe result and timings to this file")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="what to run, in this order (the reference is needed for ratios and the agreement check)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = synthetic_features(args.n, args.n_test, args.d, args.classes, args.noise, args.seed)
    log_grid = np.log10(ProbeSettings(search=args.search).weight_decay_grid())
    print(
        f"n={args.n} n_test={args.n_test} d={args.d} classes={args.classes} noise={args.noise} "
        f"epochs={args.epochs} search={args.search} device={args.device} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')} load average={os.getloadavg()[0]:.1f}"
    )
    results, seconds, cpu_seconds, steps = {}, {}, {}, {}
    for label in args.variants:
        fit, precision = VARIANTS[label]
        settings = ProbeSettings(epochs=args.epochs, search=args.search, search_precision=precision)
        start, cpu_start = time.perf_counter(), time.process_time()
        results[label] = train_probe(
            *data,
            seed=args.seed,
            settings=settings,
            device=args.device,
            name=label,
            progress=args.progress,
            fit=fit,
            memory_budget=args.memory_budget,
        )
        seconds[label] = time.perf_counter() - start
        cpu_seconds[label] = time.process_time() - cpu_start
        result = results[label]
        steps[label] = int(np.argmin(np.abs(log_grid - math.log10(result["weight_decay"]))))
        top5 = "" if result["top5"] is None else f"  top5={100 * result['top5']:.2f}%"
        print(
            f"{label:>16}: {seconds[label]:6.1f} s wall {cpu_seconds[label]:6.1f} s CPU  "
            f"{len(result['validation'])} candidates  "
            f"lr={result['learning_rate']:g} wd={result['weight_decay']:.3g} (grid step {steps[label]})  "
            f"val={100 * result['validation_accuracy']:.2f}%  top1={100 * result['top1']:.2f}%{top5}",
            flush=True,
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"args": vars(args), "seconds": seconds, "cpu_seconds": cpu_seconds, "results": results}, file)
    if "reference" not in results:
        return 0
    reference, agree = results["reference"], True
    for label in [label for label in results if label != "reference"]:
        result = results[label]
        ratio = seconds["reference"] / seconds[label]
        cpu_ratio = cpu_seconds["reference"] / cpu_seconds[label]
        if "paper-loader" in seconds and label != "paper-loader":
            print(
                f"{label:>16} vs paper-loader: speed-up {seconds['paper-loader'] / seconds[label]:.1f}x wall, "
                f"{cpu_seconds['paper-loader'] / cpu_seconds[label]:.1f}x CPU time"
            )
        wd_steps = abs(steps[label] - steps["reference"])
        top1_points = 100 * abs(result["top1"] - reference["top1"])
        ok = result["learning_rate"] == reference["learning_rate"] and wd_steps <= 1 and top1_points <= 0.5
        agree &= ok
        if (result["learning_rate"], steps[label]) != (reference["learning_rate"], steps["reference"]):
            lr, wd = result["learning_rate"], result["weight_decay"]
            val32 = float32_validation_accuracy(data, args.seed, args.epochs, lr, wd)
            print(
                f"{label:>16}: float32 validation accuracy at its choice {100 * val32:.2f}%, "
                f"at the reference's choice {100 * reference['validation_accuracy']:.2f}%"
            )
        print(
            f"{label:>16} vs reference: speed-up {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU time; "
            f"same lr: {result['learning_rate'] == reference['learning_rate']}; "
            f"weight decays {wd_steps} grid step(s) apart; top-1 differs by {top1_points:.2f} points: "
            f"{'agree' if ok else 'DISAGREE'}"
        )
    print("agree" if agree else "DISAGREE")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
