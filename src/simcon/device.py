"""The compute device a job runs on, and exclusive GPU slots for jobs that share a machine's GPUs."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

LOCK_DIR = Path(tempfile.gettempdir()) / "simcon-gpu-locks"


@contextmanager
def acquire_device(
    device: str,
    *,
    lock_dir: Path = LOCK_DIR,
    device_count: int | None = None,
    poll_seconds: float = 1.0,
) -> Iterator[torch.device]:
    """The device for a config value, a GPU held exclusively until the `with` block ends.

    CPU (and 'auto' without CUDA) and an explicit 'cuda:i' are yielded as they are. For 'auto' with
    CUDA, or 'cuda', the first visible GPU whose lock file (`lock_dir/gpu-<id>.lock`, <id> the
    GPU's entry in CUDA_VISIBLE_DEVICES or its index) no other process holds is locked and yielded
    as 'cuda:i'; when every GPU is held, it waits for one. The lock is released when the block ends,
    on error too, and by the operating system when the process dies. Inside a SLURM job the GPUs
    SLURM allocated are the only visible ones and belong to the job alone: 'cuda:0', no lock.
    `device_count` (default: torch's count of visible GPUs) lets tests run without a GPU.
    """
    count = torch.cuda.device_count() if device_count is None else device_count
    resolved = torch.device(("cuda" if count > 0 else "cpu") if device == "auto" else device)
    if resolved.type != "cuda" or resolved.index is not None:
        yield resolved
        return
    if "SLURM_JOB_ID" in os.environ:
        yield torch.device("cuda:0")
        return
    if count == 0:
        raise RuntimeError(f"device '{device}' asks for CUDA but no GPU is visible")
    ids = visible_gpu_ids(count)
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for index, gpu_id in enumerate(ids):
            handle = open(lock_dir / f"gpu-{gpu_id}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield torch.device(f"cuda:{index}")
            finally:
                handle.close()  # closing the file releases its lock
            return
        time.sleep(poll_seconds)


def visible_gpu_ids(count: int) -> list[str]:
    """The ids that name the `count` visible GPUs machine-wide: CUDA_VISIBLE_DEVICES' entries, else 0..count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(index) for index in range(count)]
    return [entry.strip() for entry in visible.split(",") if entry.strip()][:count]
