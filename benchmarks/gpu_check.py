"""The CUDA paths checked in one go on a single-GPU machine without Snakemake or network (`make gpu-check`).

Steps, each a subprocess with a time limit inside one overall budget (docs/gpu-check.md):

1. ``cuda-tests``: ``pytest -m cuda`` on the test files that hold CUDA-only tests.
2. ``experiment``: a generated dataset through three timm models with seeded random weights, features by
   ``simcon.extract.extract_features``, the similarity matrices of every registered metric by
   ``simcon.similarity.compute_similarity`` and probes by ``simcon.probe.train_probe``, on the CPU and on the
   device from the same images, there twice: with torch's default float32 math (TF32 convolutions) and with TF32
   off. It passes when the TF32-off run agrees with the CPU, every similarity to 1e-5 (also the engine alone on
   the CPU's features) and every top-1 accuracy to 0.5 points; the default run's agreement is reported.
3. ``similarity-device`` and ``similarity-cpu``: ``benchmarks/similarity.py`` (engine only) on the same random
   features on the device and on the CPU with the SLURM profile's 4 threads of a similarity job: time per pair,
   and the fraction of each one's float32 matmul peak.
4. ``probe``: ``benchmarks/probe.py`` on the device, the batched float32 search against one candidate at a time
   (not the bfloat16 search, whose choice may differ from the reference's, which fails the script).
5. ``extract``: ``benchmarks/extract.py`` on the device, the loader and the pipeline against the bare forward.
6. ``neighbour-metrics``: ``benchmarks/similarity.py`` with the k-NN metrics and Procrustes, the engine on the
   device against per-pair loops of the same definitions on the CPU (the target: 20x at M = 16,
   n = 5,000, d = 768), each baseline timed on one pair and extrapolated.

Writes gpu-check.json, gpu-check.md and gpu-check.log (every step's output) to --out, by default $OUT when set,
else results/gpu-check/. Exits 1 when a step fails or runs out of time.

    python benchmarks/gpu_check.py --device cuda           # make gpu-check: at most 8 minutes
    python benchmarks/gpu_check.py --device cpu --quick    # the same steps at tiny sizes, CPU against CPU
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from similarity import NEW_METRICS

REPO = Path(__file__).resolve().parents[1]
SIMILARITY_TOLERANCE = 1e-5
ACCURACY_POINTS = 0.5
BUDGET_SECONDS = {False: 480.0, True: 270.0}
"""The whole check's time (full, quick); steps that would start past it are skipped."""
MIN_STEP_SECONDS = 10.0
"""A step with less time than this left in the budget is skipped."""

EXPERIMENT_MODELS: dict[str, dict[str, Any]] = {
    "resnet18": {"backend": "timm", "name": "resnet18", "layer": "global_pool", "weights": "random", "init_seed": 0},
    "efficientnet_lite0": {
        "backend": "timm",
        "name": "tf_efficientnet_lite0",
        "layer": "global_pool",
        "weights": "random",
        "init_seed": 1,
    },
    "vit_tiny": {
        "backend": "timm",
        "name": "vit_tiny_patch16_224",
        "layer": "norm",
        "weights": "random",
        "init_seed": 2,
        "kwargs": {"img_size": 64},
    },
}
EXPERIMENT_IMAGE_SIZE = 64
NEIGHBOUR_METRICS = ("mutual_knn10", "jaccard_knn10", "cknna10", "procrustes")
"""The metrics of the 20x speed target, timed against their per-pair baselines."""
NEW_DEVICE_METRICS = tuple(name for name in NEW_METRICS if not name.endswith("_kendall"))
"""The measures added after the paper's that the new-measures step times on the device."""
SLURM_CPUS = "4"
"""Threads of the CPU similarity run: the CPUs of a similarity job in profiles/slurm (`cpus`)."""


@dataclass(frozen=True)
class Step:
    """One subprocess of the check: its command, its time limit, the JSON report it writes, if any, and
    environment variables it runs with."""

    name: str
    argv: list[str]
    limit: float
    report: Path | None
    env: tuple[tuple[str, str], ...] = ()


def plan(device: str, quick: bool, folder: Path) -> list[Step]:
    """The check's steps in order, at tiny sizes when `quick`; each but the tests writes a report into `folder`."""
    python, here = sys.executable, str(Path(__file__).resolve())
    tests = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    similarity = (
        ["--models", "4", "--n", "300", "--d", "32", "--peak-size", "512"]
        if quick
        else ["--models", "16", "--n", "5000", "--d", "768"]
    )
    probe = (
        ["--n", "300", "--n-test", "100", "--d", "16", "--classes", "3", "--epochs", "2"]
        if quick
        else ["--n", "20000", "--n-test", "5000", "--d", "768", "--classes", "100"]
    )
    extract = (
        [
            "--images",
            "16",
            "--batch-size",
            "8",
            "--models",
            "resnet18",
            "--loader-workers",
            "0",
            "--pipeline-workers",
            "1",
            "--repeats",
            "1",
        ]
        if quick
        else [
            "--images",
            "1024",
            "--batch-size",
            "256",
            "--models",
            "resnet50",
            "vit_base_patch16_224",
            "--loader-workers",
            "0",
            "4",
            "8",
            "15",
            "--pipeline-workers",
            "8",
            "15",
            "--repeats",
            "2",
        ]
    )

    def reporting(name: str, argv: list[str], limit: float, env: tuple[tuple[str, str], ...] = ()) -> Step:
        report = folder / f"{name}.json"
        return Step(name, [python, *argv, str(report)], limit, report, env)

    return [
        Step("cuda-tests", [python, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *tests], 120, None),
        reporting("experiment", [here, "--device", device, *(["--quick"] if quick else []), "--experiment"], 180),
        reporting(
            "similarity-device",
            ["benchmarks/similarity.py", "--device", device, *similarity, "--baseline-pairs", "0", "--json"],
            60,
        ),
        reporting(
            "similarity-cpu",
            ["benchmarks/similarity.py", "--device", "cpu", *similarity, "--baseline-pairs", "0", "--json"],
            120,
            (("OMP_NUM_THREADS", SLURM_CPUS),),
        ),
        reporting(
            "probe",
            ["benchmarks/probe.py", "--device", device, *probe, "--variants", "reference", "batched-float32", "--json"],
            120,
        ),
        reporting("extract", ["benchmarks/extract.py", "--device", device, *extract, "--json"], 150),
        reporting(
            "neighbour-metrics",
            [
                "benchmarks/similarity.py",
                "--device",
                device,
                *similarity,
                "--metrics",
                *NEIGHBOUR_METRICS,
                "--baseline-pairs",
                "1",
                "--json",
            ],
            120,
        ),
        reporting(
            "new-measures",
            [
                "benchmarks/similarity.py",
                "--device",
                device,
                *(similarity if quick else ["--models", "16", "--n", "2000", "--d", "768"]),
                "--metrics",
                *NEW_DEVICE_METRICS,
                "--baseline-pairs",
                "0",
                "--json",
            ],
            120,
        ),
    ]


def run_step(step: Step, deadline: float, log: Path) -> dict[str, Any]:
    """Run one step with its output appended to `log`; its status, seconds, last lines and report."""
    result: dict[str, Any] = {"name": step.name, "command": shlex.join(step.argv), "report": None}
    script = REPO / step.argv[1]
    limit = min(step.limit, deadline - time.monotonic())
    if script.suffix == ".py" and not script.exists():
        missing = f"{script.relative_to(REPO)} is not in this checkout"
        return {**result, "status": "missing", "seconds": 0.0, "tail": missing}
    if limit < MIN_STEP_SECONDS:
        return {**result, "status": "skipped", "seconds": 0.0, "tail": "no time left in the check's budget"}
    with log.open("a") as out:
        out.write(f"\n===== {step.name}: {result['command']}\n")
        out.flush()
        offset = out.tell()
        start = time.monotonic()
        env = {
            **os.environ,
            **dict(step.env),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        }
        process = subprocess.Popen(
            step.argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            status = "passed" if process.wait(timeout=limit) == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the step's own process group: DataLoader workers too
            process.wait()
            status = "timeout"
        seconds = time.monotonic() - start
    with log.open() as text:
        text.seek(offset)
        tail = "\n".join(text.read().splitlines()[-25:])
    if step.report is not None and step.report.exists():
        result["report"] = json.loads(step.report.read_text())
    return {**result, "status": status, "returncode": process.returncode, "seconds": round(seconds, 1), "tail": tail}


def _max_diff(a: np.ndarray | str, b: np.ndarray | str) -> float:
    """The largest difference of two matrices; 0 for the same error on both sides, inf for different outcomes."""
    if isinstance(a, str) or isinstance(b, str):
        return 0.0 if a == b else math.inf
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def matrix_or_error(features: dict[str, np.ndarray], metric: str, device: str) -> np.ndarray | str:
    """The metric's similarity matrix, or the message of the ValueError that says it is undefined for these
    features (an unregularised CCA-family measure with more features than samples)."""
    from simcon.similarity import compute_similarity

    try:
        return compute_similarity(features, metric, device=device).matrix.to_numpy()
    except ValueError as error:
        return str(error)


@contextmanager
def float32_math(strict: bool) -> Iterator[None]:
    """With `strict`, CUDA convolutions and matrix products in plain float32 (no TF32) inside the block;
    otherwise torch's defaults (TF32 convolutions, float32 matrix products)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if strict:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def experiment(device: str, quick: bool) -> dict[str, Any]:
    """The same images through extraction, every similarity metric and the probes on the CPU and on `device`,
    there with torch's default float32 math and with TF32 off. Passes when the strict float32 run and the
    similarity engine alone (on the CPU's features) agree with the CPU to SIMILARITY_TOLERANCE and every
    strict top-1 accuracy to ACCURACY_POINTS."""
    from simcon.datasets import SPLITS, load_split
    from simcon.extract import extract_features
    from simcon.metrics import metric_names
    from simcon.models import build_model
    from simcon.probe import train_probe

    spec = {
        "source": "generated",
        "domain": "shapes",
        "train_per_class": 10 if quick else 100,
        "test_per_class": 5 if quick else 100,
        "resolution": EXPERIMENT_IMAGE_SIZE,
        "seed": 0,
    }
    splits = {split: load_split("shapes", spec, split) for split in SPLITS}
    labels = {split: data.labels for split, data in splits.items()}
    runs = {"cpu": ("cpu", False), "device": (device, False), "strict": (device, True)}
    features: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    matrices: dict[str, dict[str, np.ndarray]] = {}
    probes: dict[str, dict[str, dict]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for run, (dev, strict) in runs.items():
        with float32_math(strict):
            start = time.perf_counter()
            features[run] = {
                model_id: {
                    split: extract_features(
                        build_model(model_id, model_spec),
                        data,
                        np.arange(len(data)),
                        image_size=EXPERIMENT_IMAGE_SIZE,
                        batch_size=64,
                        device=torch.device(dev),
                        name=model_id,
                        progress=False,
                    )
                    for split, data in splits.items()
                }
                for model_id, model_spec in EXPERIMENT_MODELS.items()
            }
            middle = time.perf_counter()
            train = {model_id: arrays["train"] for model_id, arrays in features[run].items()}
            matrices[run] = {metric: matrix_or_error(train, metric, dev) for metric in metric_names()}
            end = time.perf_counter()
            probes[run] = {
                model_id: train_probe(
                    arrays["train"], labels["train"], arrays["test"], labels["test"], seed=0, device=dev, name=model_id
                )
                for model_id, arrays in features[run].items()
            }
            seconds[run] = {"extract": middle - start, "similarity": end - middle, "probe": time.perf_counter() - end}
    cpu_train = {model_id: arrays["train"] for model_id, arrays in features["cpu"].items()}
    metrics = [
        {
            "metric": metric,
            **{
                f"{run}_max_diff": _max_diff(matrices[run][metric], matrices["cpu"][metric])
                for run in ("device", "strict")
            },
            "engine_max_diff": _max_diff(matrix_or_error(cpu_train, metric, device), matrices["cpu"][metric]),
            "undefined": matrices["cpu"][metric] if isinstance(matrices["cpu"][metric], str) else None,
        }
        for metric in metric_names()
    ]
    models = []
    for model_id in EXPERIMENT_MODELS:
        cpu = probes["cpu"][model_id]
        row: dict[str, Any] = {"model": model_id, "top1_cpu": cpu["top1"]}
        for run in ("device", "strict"):
            result = probes[run][model_id]
            row |= {
                f"{run}_feature_max_diff": max(
                    _max_diff(features[run][model_id][s], features["cpu"][model_id][s]) for s in SPLITS
                ),
                f"{run}_top1": result["top1"],
                f"{run}_points_apart": 100 * abs(result["top1"] - cpu["top1"]),
                f"{run}_same_hyperparameters": (result["learning_rate"], result["weight_decay"])
                == (cpu["learning_rate"], cpu["weight_decay"]),
            }
        models.append(row)

    def agrees(run: str) -> bool:
        return all(m[f"{run}_max_diff"] <= SIMILARITY_TOLERANCE for m in metrics) and all(
            m[f"{run}_points_apart"] <= ACCURACY_POINTS for m in models
        )

    return {
        "device": device,
        "dataset": spec,
        "models": EXPERIMENT_MODELS,
        "image_size": EXPERIMENT_IMAGE_SIZE,
        "n_train": len(splits["train"]),
        "n_test": len(splits["test"]),
        "similarity_tolerance": SIMILARITY_TOLERANCE,
        "accuracy_points": ACCURACY_POINTS,
        "tf32_defaults": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "metrics": metrics,
        "probes": models,
        "seconds": seconds,
        "device_defaults_agree": agrees("device"),
        "passed": agrees("strict") and all(m["engine_max_diff"] <= SIMILARITY_TOLERANCE for m in metrics),
    }


def machine(device: str) -> dict[str, Any]:
    """The machine, the device and the versions of the pinned packages here against their pins."""
    packages = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line):
            try:
                here = importlib.metadata.version(match[1])
            except importlib.metadata.PackageNotFoundError:
                here = None
            packages[match[1]] = {"pinned": match[3], "here": here}
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "host": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if cuda else "CPU",
        "packages": packages,
    }


def similarity_per_pair(device_report: dict | None, cpu_report: dict | None) -> list[dict[str, Any]]:
    """Per metric: the engine's seconds per pair on the device and on the CPU, and each one's peak fraction."""
    if not device_report or not cpu_report:
        return []
    cpu_rows = {row["metric"]: row for row in cpu_report["rows"]}
    rows = []
    for row in device_report["rows"]:
        cpu = cpu_rows[row["metric"]]
        rows.append(
            {
                "metric": row["metric"],
                "pairs": row["pairs"],
                "device_seconds_per_pair": row["engine_seconds"] / row["pairs"],
                "cpu_seconds_per_pair": cpu["engine_seconds"] / cpu["pairs"],
                "speedup": cpu["engine_seconds"] / row["engine_seconds"],
                "device_peak_fraction": row["peak_fraction"],
                "cpu_peak_fraction": cpu["peak_fraction"],
            }
        )
    return rows


def benchmark_lines(name: str, report: dict) -> list[str]:
    """Short tables of the probe and extraction benchmarks' reports (their scripts' --json formats)."""
    if name == "probe":
        seconds = report["seconds"]
        lines = ["| variant | seconds | speed-up over the reference | lr | wd | top-1 |", "|---|---|---|---|---|---|"]
        for variant, result in report["results"].items():
            speedup = seconds["reference"] / seconds[variant] if "reference" in seconds else float("nan")
            lines.append(
                f"| {variant} | {seconds[variant]:.1f} | {speedup:.1f}x | {result['learning_rate']:g} | "
                f"{result['weight_decay']:.3g} | {100 * result['top1']:.2f} |"
            )
        return lines
    loader = ", ".join(f"{workers} workers {rate:.0f}" for workers, rate in report["loader"].items())
    lines = [
        f"Loader alone, images/s: {loader}",
        "",
        "| model | bare forward images/s | pipeline images/s (workers): fraction of bare |",
        "|---|---|---|",
    ]
    for model, figures in report["models"].items():
        pipeline = ", ".join(
            f"{rate:.0f} ({workers}): {rate / figures['bare']:.0%}" for workers, rate in figures["pipeline"].items()
        )
        lines.append(f"| {model} | {figures['bare']:.0f} | {pipeline} |")
    return lines


def markdown(summary: dict[str, Any]) -> str:
    """The summary as a short Markdown page."""
    m = summary["machine"]
    lines = [
        f"# gpu-check: {m['device_name']} ({m['device']}), {summary['date']}",
        "",
        f"torch {m['torch']} (CUDA {m['torch_cuda']}), {m['cpus']} CPUs; quick: {summary['quick']}; "
        f"{summary['seconds']:.0f} s; passed: {summary['passed']}; complete: {summary['complete']}",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} |" for s in summary["steps"]]
    if summary["similarity_per_pair"]:
        lines += [
            "",
            "Similarity engine, same random features (benchmarks/similarity.py):",
            "",
            "| metric | pairs | device s/pair | CPU s/pair | CPU s / device s | device % of fp32 peak "
            "| CPU % of peak |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['metric']} | {r['pairs']} | {r['device_seconds_per_pair']:.3g} | "
            f"{r['cpu_seconds_per_pair']:.3g} | {r['speedup']:.1f}x | {100 * r['device_peak_fraction']:.0f} % "
            f"| {100 * r['cpu_peak_fraction']:.0f} % |"
            for r in summary["similarity_per_pair"]
        ]
    baselines = next((s["report"] for s in summary["steps"] if s["name"] == "neighbour-metrics"), None)
    if baselines:
        lines += [
            "",
            "Neighbour metrics and Procrustes, engine on the device against per-pair loops on the CPU "
            "(benchmarks/similarity.py; baseline timed on 1 pair, extrapolated):",
            "",
            "| metric | pairs | baseline s (CPU) | engine s (device) | speed-up | max diff |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['metric']} | {r['pairs']} | {r['baseline_seconds']:.3g} | {r['engine_seconds']:.3g} | "
            f"{r['baseline_seconds'] / r['engine_seconds']:.1f}x | {r['max_diff']:.1e} |"
            for r in baselines["rows"]
        ]
    for step in summary["steps"]:
        if step["name"] in ("probe", "extract") and step["report"]:
            try:
                lines += [
                    "",
                    f"{step['name']} (benchmarks/{step['name']}.py):",
                    "",
                    *benchmark_lines(step["name"], step["report"]),
                ]
            except (KeyError, TypeError, AttributeError, ValueError) as error:  # the script's format changed
                lines += ["", f"{step['name']}: report not summarised ({error!r}); see gpu-check.json"]
    report = next((s["report"] for s in summary["steps"] if s["name"] == "experiment"), None)
    if report:
        lines += [
            "",
            f"Experiment, device against CPU ({report['n_train']} train, {report['n_test']} test images; "
            f"'default': torch's float32 math, TF32 convolutions; 'strict': TF32 off):",
            "",
            "| model | max feature diff, default / strict | top-1 CPU | top-1 device, default / strict "
            "| same hyperparameters, default / strict |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['model']} | {p['device_feature_max_diff']:.1e} / {p['strict_feature_max_diff']:.1e} | "
            f"{100 * p['top1_cpu']:.2f} | {100 * p['device_top1']:.2f} / {100 * p['strict_top1']:.2f} | "
            f"{p['device_same_hyperparameters']} / {p['strict_same_hyperparameters']} |"
            for p in report["probes"]
        ]
        lines += ["", "| metric | max diff, default | max diff, strict | max diff, engine alone |", "|---|---|---|---|"]
        lines += [
            f"| {r['metric']} | {r['device_max_diff']:.1e} | {r['strict_max_diff']:.1e} | {r['engine_max_diff']:.1e} |"
            + (" undefined at this n (same error on both)" if r.get("undefined") else "")
            for r in report["metrics"]
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the mechanics in a minute or two")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "results" / "gpu-check"))
    parser.add_argument(
        "--experiment",
        type=Path,
        metavar="JSON",
        help="run only the experiment step and write its report here (the check runs itself so)",
    )
    args = parser.parse_args()
    if args.experiment:
        report = experiment(args.device, args.quick)
        args.experiment.write_text(json.dumps(report, indent=1))
        print(
            json.dumps(
                {k: report[k] for k in ("metrics", "probes", "seconds", "device_defaults_agree", "passed")}, indent=1
            )
        )
        return 0 if report["passed"] else 1

    start = time.monotonic()
    deadline = start + BUDGET_SECONDS[args.quick]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "gpu-check.log"
    log.write_text("")
    steps = []
    with tempfile.TemporaryDirectory() as folder:  # the steps' reports go into gpu-check.json
        for step in plan(args.device, args.quick, Path(folder)):
            steps.append(run_step(step, deadline, log))
            print(f"{step.name}: {steps[-1]['status']} in {steps[-1]['seconds']} s", flush=True)
    reports = {s["name"]: s["report"] for s in steps}
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(args.device),
        "quick": args.quick,
        "seconds": round(time.monotonic() - start, 1),
        "passed": all(s["status"] not in ("failed", "timeout") for s in steps),
        "complete": all(s["status"] == "passed" for s in steps),
        "similarity_per_pair": similarity_per_pair(reports["similarity-device"], reports["similarity-cpu"]),
        "steps": steps,
    }
    (args.out / "gpu-check.json").write_text(json.dumps(summary, indent=1))
    page = markdown(summary)
    (args.out / "gpu-check.md").write_text(page)
    for step in steps:
        if step["status"] not in ("passed",):
            print(f"\n----- {step['name']} ({step['status']}):\n{step['tail']}")
    print("\n" + page)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
