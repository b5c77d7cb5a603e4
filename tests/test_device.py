"""GPU slots without a GPU: the device count is injected, the locks are real lock files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from simcon.device import acquire_device


@pytest.fixture(autouse=True)
def no_slurm_no_cuda_mask(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cpu_and_explicit_devices_pass_through(tmp_path):
    with acquire_device("cpu", lock_dir=tmp_path, device_count=2) as device:
        assert device == torch.device("cpu")
    with acquire_device("auto", lock_dir=tmp_path, device_count=0) as device:
        assert device == torch.device("cpu")
    with acquire_device("cuda:1", lock_dir=tmp_path, device_count=2) as device:
        assert device == torch.device("cuda:1")
    assert not list(tmp_path.iterdir())


def test_concurrent_holders_get_different_gpus(tmp_path):
    with acquire_device("auto", lock_dir=tmp_path, device_count=2) as first:
        with acquire_device("cuda", lock_dir=tmp_path, device_count=2) as second:
            assert {first, second} == {torch.device("cuda:0"), torch.device("cuda:1")}


def test_another_process_holding_gpu0_gets_this_one_gpu1(tmp_path):
    holder = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from simcon.device import acquire_device
        with acquire_device("cuda", lock_dir=Path({str(tmp_path)!r}), device_count=2) as device:
            print(device, flush=True)
            sys.stdin.readline()
    """)
    process = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "cuda:0"
        with acquire_device("cuda", lock_dir=tmp_path, device_count=2) as device:
            assert device == torch.device("cuda:1")
    finally:
        process.communicate("\n", timeout=60)


def test_lock_is_released_on_exit_and_on_error(tmp_path):
    with acquire_device("cuda", lock_dir=tmp_path, device_count=1) as device:
        assert device == torch.device("cuda:0")
    with pytest.raises(ValueError):
        with acquire_device("cuda", lock_dir=tmp_path, device_count=1):
            raise ValueError("job failed")
    with acquire_device("cuda", lock_dir=tmp_path, device_count=1) as device:
        assert device == torch.device("cuda:0")


def test_a_busy_machine_waits_for_a_free_gpu(tmp_path):
    acquired = threading.Event()

    def second_job():
        with acquire_device("cuda", lock_dir=tmp_path, device_count=1, poll_seconds=0.05):
            acquired.set()

    with acquire_device("cuda", lock_dir=tmp_path, device_count=1):
        thread = threading.Thread(target=second_job)
        thread.start()
        assert not acquired.wait(0.3)
    thread.join(timeout=10)
    assert acquired.is_set()


def test_locks_name_the_gpus_of_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with acquire_device("cuda", lock_dir=tmp_path, device_count=2) as device:
        assert device == torch.device("cuda:0")
        assert (tmp_path / "gpu-2.lock").exists()


def test_inside_a_slurm_job_the_allocated_gpu_is_used_without_a_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with acquire_device("auto", lock_dir=tmp_path, device_count=1) as device:
        assert device == torch.device("cuda:0")
    assert not list(tmp_path.iterdir())


def test_cuda_without_a_visible_gpu_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="no GPU is visible"):
        with acquire_device("cuda", lock_dir=tmp_path, device_count=0):
            pass
