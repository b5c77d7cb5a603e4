"""Benchmark the extraction pipeline: image loading alone against the number of workers, and the full pipeline
(DataLoader workers decoding and transforming, the forward, the features back on the host) as a fraction of the
bare forward pass on batches already prepared on the device, same model, batch size and run.

Images: a folder of generated JPEGs of ImageNet's typical size (landscape 500 x 375 and 500 x 333, portrait
375 x 500; smooth random colour fields with mild noise, quality 90, about 40-60 KB each), read as an image-folder
dataset at the paper's 224 px (resize 256, centre crop 224). Models: timm with random weights, through
simcon.models.build_model and simcon.extract.feature_batches, exactly as a features job runs them.

    PYTHONPATH=src python benchmarks/extract.py                      # CPU, small: about 2 minutes on 2 cores
    PYTHONPATH=src python benchmarks/extract.py --device cuda --images 2048 --batch-size 256 \\
        --loader-workers 0 2 4 8 16 --pipeline-workers 4 8 16 --models resnet50 vit_base_patch16_224
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simcon.datasets import load_split
from simcon.extract import SplitImages, feature_batches, image_loader, image_transform
from simcon.models import build_model

SIZES = [(500, 375), (500, 333), (375, 500)]
LAYERS = {"vit": "norm"}  # timm ViTs: the final norm's CLS token; other models: global_pool


def write_images(root: Path, n: int, seed: int = 0) -> Path:
    """n JPEGs in two classes under root/train (and one per class under root/test, which the folder source needs)."""
    rng = np.random.default_rng(seed)
    for i in range(n + 2):
        split, label = ("train", i % 2) if i < n else ("test", i - n)
        width, height = SIZES[i % len(SIZES)]
        coarse = Image.fromarray(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        pixels = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
        folder = root / split / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    return root


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(images: SplitImages, batch_size: int, workers: int) -> float:
    """Images per second of decode + transform + collate alone (worker start-up included)."""
    start = time.perf_counter()
    for _ in image_loader(images, batch_size=batch_size, workers=workers):
        pass
    return len(images) / (time.perf_counter() - start)


@torch.inference_mode()
def bare_forward_rate(
    network: torch.nn.Module, batches: list[torch.Tensor], device: torch.device, precision: str
) -> float:
    """Images per second of the forward alone on batches already on the device."""
    autocast = torch.autocast(device.type, dtype=getattr(torch, precision), enabled=precision != "float32")
    with autocast:
        network(batches[0])  # warm-up (cuDNN / oneDNN kernel choice)
        synchronize(device)
        start = time.perf_counter()
        for batch in batches:
            network(batch)
        synchronize(device)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def pipeline_rate(model, split, transform, args: argparse.Namespace, device: torch.device, workers: int) -> float:
    """Images per second of simcon.extract.feature_batches over the whole folder (worker start-up included)."""
    start = time.perf_counter()
    for _ in feature_batches(
        model,
        split,
        np.arange(len(split)),
        transform,
        batch_size=args.batch_size,
        device=device,
        precision=args.precision,
        workers=workers,
        progress=False,
    ):
        pass
    return len(split) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=64, help="JPEGs in the folder (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--crop-pct", type=float, default=0.875)
    parser.add_argument("--models", nargs="+", default=["resnet50", "vit_small_patch16_224"], help="timm names")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1, 2], help="for (a)")
    parser.add_argument("--pipeline-workers", type=int, nargs="+", default=[1, 2], help="for (b)")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each measurement, the fastest kept")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the main process")
    parser.add_argument("--folder", type=Path, help="where to write the JPEGs (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        root = write_images(args.folder or Path(tmp), args.images)
        split = load_split("jpegs", {"source": "image_folder", "path": str(root)}, "train")
        sizes = [os.path.getsize(p) for p in root.glob("train/*/*.jpg")]
        print(
            f"{len(split)} JPEGs, mean {np.mean(sizes) / 1e3:.0f} KB; {args.image_size} px, crop {args.crop_pct}; "
            f"batch {args.batch_size}; device {device}; {args.threads} torch threads; {os.cpu_count()} CPUs; "
            f"{args.precision}"
        )
        results: dict = {"loader": {}, "models": {}}

        first = build_model("m", {"backend": "timm", "name": args.models[0], "layer": "", "weights": "random"})
        images = SplitImages(split, np.arange(len(split)), image_transform(first, args.image_size, args.crop_pct))
        print("(a) loader alone (decode + transform + collate), images/s:")
        for workers in args.loader_workers:
            rate = max(loader_rate(images, args.batch_size, workers) for _ in range(args.repeats))
            results["loader"][workers] = rate
            print(f"    {workers:3d} workers: {rate:8.1f}")

        print("(b) pipeline / bare forward on prepared batches:")
        for name in args.models:
            layer = next((layer for prefix, layer in LAYERS.items() if name.startswith(prefix)), "global_pool")
            model = build_model(name, {"backend": "timm", "name": name, "layer": layer, "weights": "random"})
            transform = image_transform(model, args.image_size, args.crop_pct)
            network = model.network.to(device)
            loader = image_loader(
                SplitImages(split, np.arange(len(split)), transform),
                batch_size=args.batch_size,
                workers=max(args.loader_workers),
            )
            batches = [batch.to(device) for batch in loader]
            figures: dict = {"bare": 0.0, "pipeline": {}}
            for _ in range(args.repeats):  # interleaved, so that both see the same machine load
                figures["bare"] = max(figures["bare"], bare_forward_rate(network, batches, device, args.precision))
                for workers in args.pipeline_workers:
                    rate = pipeline_rate(model, split, transform, args, device, workers)
                    figures["pipeline"][workers] = max(figures["pipeline"].get(workers, 0.0), rate)
            del batches
            results["models"][name] = figures
            print(f"    {name}: bare forward {figures['bare']:.1f} images/s")
            for workers, rate in figures["pipeline"].items():
                print(
                    f"        pipeline, {workers:3d} workers: {rate:8.1f} images/s = {rate / figures['bare']:6.1%} of bare"
                )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=2))


if __name__ == "__main__":
    main()
