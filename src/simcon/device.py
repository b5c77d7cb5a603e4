"""The compute device a job runs on."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """The torch device for a config value: 'auto' picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
