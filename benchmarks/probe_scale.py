"""What one probe job costs at the paper's ImageNet size, scaled from a measured training round.

Times ``simcon.probe.fit_linear`` on random features of the given size (seconds per minibatch
step with K candidates; on CUDA also the peak memory it allocated) and scales the measured
rate, in floating-point operations a second, to the paper's ImageNet-1k probe with the code's
search: 1,281,167 train images (80 % of them fitted during the search), 1,024 dimensions,
1,000 classes, 4 learning rates, 20 epochs, batch 1024; a scan round of 4 x 8 candidates,
three refinement rounds of at most 4 x 2, the retrain of one on the full train split. The
products of a step (logits and gradients: 4 x batch x (d+1) x K x C operations) dominate; the
scaled figures are estimates from the measured rate.

    python benchmarks/probe_scale.py                               # d=1024, 1,000 classes, K=8, 20 steps
    python benchmarks/probe_scale.py --device cuda --candidates 32 --steps 50
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from simcon.probe import MEMORY_HEADROOM, ProbeSettings, available_memory, candidate_bytes, fit_linear

IMAGENET = {"n_train": 1_281_167, "n_test": 50_000, "d": 1024, "classes": 1000}


def protocol_operations(n_train: int, d: int, n_classes: int, settings: ProbeSettings) -> float:
    """Floating-point operations of the products of one probe job (the most the code's search can train)."""
    n_fit = n_train - math.ceil(settings.val_fraction * n_train)
    lrs = len(settings.learning_rates)
    candidate_epochs = settings.epochs * (n_fit * lrs * (len(settings.scan()) + 2 * len(settings.spans())) + n_train)
    return 4.0 * candidate_epochs * (d + 1) * n_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=IMAGENET["d"])
    parser.add_argument("--classes", type=int, default=IMAGENET["classes"])
    parser.add_argument("--candidates", type=int, default=8, help="K candidates trained together")
    parser.add_argument("--steps", type=int, default=20, help="minibatch steps timed")
    parser.add_argument("--batch-size", type=int, default=ProbeSettings.batch_size)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, k, batch = torch.device(args.device), args.candidates, args.batch_size
    n = args.steps * batch
    x = torch.randn(n, args.d, device=device)
    y = torch.randint(0, args.classes, (n,), device=device)
    lrs, wds = [1e-2] * k, [1e-3] * k
    fit_linear(
        x, y, args.classes, lrs, wds, seed=0, epochs=1, batch_size=batch, rows=torch.arange(batch, device=device)
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    start = time.perf_counter()
    fit_linear(x, y, args.classes, lrs, wds, seed=0, epochs=1, batch_size=batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    rate = 4.0 * batch * (args.d + 1) * k * args.classes / seconds
    planned = candidate_bytes(args.d, args.classes, batch_size=batch, steps=args.steps)
    print(
        f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"d={args.d} classes={args.classes} K={k} batch={batch}"
    )
    print(
        f"measured: {1e3 * seconds:.1f} ms a step, {rate / 1e9:.1f} GFLOP/s in the products, "
        f"{1e3 * seconds / k:.2f} ms a candidate-step"
    )
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
        print(f"measured peak above the features: {peak / 2**20:.0f} MiB; planned {k * planned / 2**20:.0f} MiB")
    settings = ProbeSettings()
    steps = settings.epochs * math.ceil(IMAGENET["n_train"] / batch)
    per_candidate = candidate_bytes(IMAGENET["d"], IMAGENET["classes"], batch_size=batch, steps=steps)
    features = 4 * (IMAGENET["n_train"] + IMAGENET["n_test"]) * IMAGENET["d"]
    scan = len(settings.learning_rates) * len(settings.scan())
    operations = protocol_operations(IMAGENET["n_train"], IMAGENET["d"], IMAGENET["classes"], settings)
    print(
        f"ImageNet-1k probe (estimate): features {features / 2**30:.2f} GiB on the device, "
        f"{per_candidate / 2**20:.1f} MiB a candidate, scan round of {scan}: {scan * per_candidate / 2**30:.2f} GiB; "
        f"{operations / 1e15:.2f} PFLOP, {operations / rate / 3600:.2f} h at the measured rate"
    )
    budget = MEMORY_HEADROOM * available_memory(device)
    print(
        f"this device: {budget / 2**30:.1f} GiB plannable now, "
        f"{int(budget // per_candidate)} ImageNet candidates at once"
    )


if __name__ == "__main__":
    main()
