"""Tests of benchmarks/gpu_check.py: its steps' bookkeeping, and the whole check at tiny sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402
from gpu_check import Step, run_step  # noqa: E402

from simcon.metrics import metric_names  # noqa: E402


def test_the_plan_runs_the_cuda_tests_and_every_benchmark_on_the_device(tmp_path: Path) -> None:
    steps = {step.name: step for step in gpu_check.plan("cuda", False, tmp_path)}
    assert list(steps) == [
        "cuda-tests",
        "experiment",
        "similarity-device",
        "similarity-cpu",
        "probe",
        "extract",
        "neighbour-metrics",
        "new-measures",
    ]
    assert {"tests/test_probe.py", "tests/test_similarity.py"} <= set(steps["cuda-tests"].argv)
    assert steps["cuda-tests"].argv[steps["cuda-tests"].argv.index("-m", 2) + 1] == "cuda"
    for name in ("similarity-device", "probe", "extract", "experiment", "neighbour-metrics", "new-measures"):
        assert steps[name].argv[steps[name].argv.index("--device") + 1] == "cuda"
    assert steps["similarity-cpu"].argv[steps["similarity-cpu"].argv.index("--device") + 1] == "cpu"
    assert dict(steps["similarity-cpu"].env) == {"OMP_NUM_THREADS": "4"}  # a similarity job's CPUs in the SLURM profile
    neighbours = steps["neighbour-metrics"].argv  # the 20x speed target: M = 16, n = 5,000, d = 768, with baselines
    assert neighbours[neighbours.index("--metrics") + 1 : neighbours.index("--baseline-pairs")] == list(
        gpu_check.NEIGHBOUR_METRICS
    )
    assert [neighbours[neighbours.index(flag) + 1] for flag in ("--models", "--n", "--d", "--baseline-pairs")] == [
        "16",
        "5000",
        "768",
        "1",
    ]
    new = steps["new-measures"].argv  # the measures added after the paper's, engine only, on the device
    assert new[new.index("--metrics") + 1 : new.index("--baseline-pairs")] == list(gpu_check.NEW_DEVICE_METRICS)
    assert "distance_correlation" in gpu_check.NEW_DEVICE_METRICS and "cca" in gpu_check.NEW_DEVICE_METRICS
    assert not any(name.endswith("_kendall") for name in gpu_check.NEW_DEVICE_METRICS)
    assert [new[new.index(flag) + 1] for flag in ("--models", "--n", "--d", "--baseline-pairs")] == [
        "16",
        "2000",
        "768",
        "0",
    ]
    assert all(step.report == tmp_path / f"{name}.json" for name, step in steps.items() if name != "cuda-tests")


def test_a_step_records_its_status_output_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, report = tmp_path / "log", tmp_path / "report.json"
    log.write_text("")
    code = f"import json; print('hello'); json.dump({{'x': 1}}, open({str(report)!r}, 'w'))"
    passed = run_step(Step("ok", [sys.executable, "-c", code], 60, report), time.monotonic() + 60, log)
    assert (passed["status"], passed["report"], passed["tail"]) == ("passed", {"x": 1}, "hello")
    failed = run_step(Step("bad", [sys.executable, "-c", "raise SystemExit(3)"], 60, None), time.monotonic() + 60, log)
    assert (failed["status"], failed["returncode"]) == ("failed", 3)
    missing = run_step(Step("gone", [sys.executable, "benchmarks/nothing.py"], 60, None), time.monotonic() + 60, log)
    assert missing["status"] == "missing" and "benchmarks/nothing.py is not in this checkout" in missing["tail"]
    late = run_step(Step("late", [sys.executable, "-c", "pass"], 60, None), time.monotonic() + 1, log)
    assert late["status"] == "skipped"
    monkeypatch.setattr(gpu_check, "MIN_STEP_SECONDS", 0.1)
    start = time.monotonic()
    slow = run_step(Step("slow", [sys.executable, "-c", "import time; time.sleep(60)"], 1, None), start + 60, log)
    assert slow["status"] == "timeout" and time.monotonic() - start < 30
    assert "===== ok:" in log.read_text() and "===== slow:" in log.read_text()


@pytest.mark.slow
def test_quick_check_on_the_cpu_writes_the_summary(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    summary = json.loads((tmp_path / "gpu-check.json").read_text())
    assert {"date", "machine", "quick", "seconds", "passed", "complete", "similarity_per_pair", "steps"} <= set(summary)
    assert summary["quick"] and summary["passed"]
    assert summary["machine"]["packages"]["torch"]["pinned"] and summary["machine"]["device_name"] == "CPU"
    statuses = {step["name"]: step["status"] for step in summary["steps"]}
    extract = "passed" if (REPO / "benchmarks/extract.py").exists() else "missing"
    assert statuses == {
        "cuda-tests": "passed",
        "experiment": "passed",
        "similarity-device": "passed",
        "similarity-cpu": "passed",
        "probe": "passed",
        "extract": extract,
        "neighbour-metrics": "passed",
        "new-measures": "passed",
    }
    experiment = next(step["report"] for step in summary["steps"] if step["name"] == "experiment")
    assert [row["metric"] for row in experiment["metrics"]] == metric_names()
    assert all(
        row["device_max_diff"] == row["strict_max_diff"] == row["engine_max_diff"] == 0.0
        for row in experiment["metrics"]
    )  # CPU against CPU; a measure undefined at the experiment's n raises the same error on both
    undefined = {row["metric"] for row in experiment["metrics"] if row["undefined"]}
    assert "cca" in undefined and "cca_linear_unbiased" not in undefined and "shape0.5" not in undefined
    assert [p["model"] for p in experiment["probes"]] == list(gpu_check.EXPERIMENT_MODELS)
    assert all(
        p["device_points_apart"] == p["strict_points_apart"] == 0.0 and p["strict_same_hyperparameters"]
        for p in experiment["probes"]
    )
    assert experiment["passed"] and experiment["device_defaults_agree"]
    pairs = summary["similarity_per_pair"]
    assert pairs and all(row["pairs"] == 6 and row["cpu_seconds_per_pair"] > 0 for row in pairs)
    page = (tmp_path / "gpu-check.md").read_text()
    assert "| experiment | passed |" in page and "device s/pair" in page and "speed-up over the reference" in page
    neighbours = next(step["report"] for step in summary["steps"] if step["name"] == "neighbour-metrics")
    assert [row["metric"] for row in neighbours["rows"]] == list(gpu_check.NEIGHBOUR_METRICS)
    assert all(row["max_diff"] < 1e-5 and row["baseline_seconds"] > 0 for row in neighbours["rows"])
    assert "| procrustes | 6 |" in page
    assert "===== experiment:" in (tmp_path / "gpu-check.log").read_text()
