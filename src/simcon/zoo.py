"""A model zoo trained on generated scenes with three objectives (supervised, SimCLR-style, CLIP-style).

The comparison is fair by construction: every objective trains the same backbone on the same two
augmented views of the same images in the same order, with the same optimiser, learning-rate schedule
and number of steps; only the head on top of the backbone's representation and the loss differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from simcon.config import ZOO_MEAN, ZOO_STD
from simcon.scenes import CAPTION_LENGTH, SHAPES, VOCABULARY, Scenes
from simcon.vocabulary import TRAINED_OBJECTIVES

LUMINANCE = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 weights, as torchvision's rgb_to_grayscale


class ZooError(ValueError):
    """A zoo setting is unusable; the message names it."""


@dataclass(frozen=True)
class TrainingSettings:
    """What every objective shares: images per step (each seen as two views), epochs, optimiser and schedule."""

    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    temperature: float = 0.1
    projection_dim: int = 64
    crop_scale: tuple[float, float] = (0.6, 1.0)
    jitter: float = 0.3
    grayscale: float = 0.5

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ZooError(f"training needs epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ZooError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 <= self.grayscale <= 1:
            raise ZooError(f"grayscale is a probability, got {self.grayscale}")


# --------------------------------------------------------------------------- augmentation


def augment(images: torch.Tensor, settings: TrainingSettings, generator: torch.Generator) -> torch.Tensor:
    """A random view of each image (B, 3, H, W) in [0, 1]: resized crop of area in crop_scale, brightness and contrast
    jitter, and with probability `grayscale` the view's luminance in all three channels.

    No flips and no hue changes, so the view still matches its caption's position and colour words (a grey view
    shows none). The grey views deny SimCLR its shortcut: without them two views of one scene match by colour
    alone, and the SimCLR models learn colour instead of shape (as SimCLR's own colour distortion prevents).
    """
    batch = len(images)
    low, high = settings.crop_scale
    side = torch.sqrt(low + (high - low) * torch.rand(batch, generator=generator))
    shift = (1 - side)[:, None] * (2 * torch.rand(batch, 2, generator=generator) - 1)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = 1 + settings.jitter * (2 * torch.rand(batch, 1, 1, 1, generator=generator) - 1)
    contrast = 1 + settings.jitter * (2 * torch.rand(batch, 1, 1, 1, generator=generator) - 1)
    grey = torch.rand(batch, 1, 1, 1, generator=generator) < settings.grayscale
    mean = views.mean(dim=(1, 2, 3), keepdim=True)
    views = ((views - mean) * contrast + mean * brightness).clamp(0, 1)
    luminance = (views * LUMINANCE.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return torch.where(grey, luminance.expand_as(views), views)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] to the zoo's input range, as the features rule's preprocessing does with ZOO_MEAN and ZOO_STD."""
    mean, std = torch.tensor(ZOO_MEAN).view(1, 3, 1, 1), torch.tensor(ZOO_STD).view(1, 3, 1, 1)
    return (images - mean) / std


# --------------------------------------------------------------------------- objectives


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's loss): row i of queries should match row i of keys among all keys, and back."""
    logits = F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).T / temperature
    targets = torch.arange(len(queries))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2B views should pick its partner view among the 2B - 1 others."""
    views = F.normalize(torch.cat([first, second]), dim=1)
    logits = views @ views.T / temperature
    logits = logits.masked_fill(torch.eye(len(views), dtype=torch.bool), float("-inf"))
    batch = len(first)
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)])
    return F.cross_entropy(logits, targets)


class TextEncoder(nn.Module):
    """A small caption encoder: a word embedding per caption position, concatenated, then a two-layer MLP."""

    def __init__(self, output_dim: int, word_dim: int = 32, hidden_dim: int = 128) -> None:
        super().__init__()
        self.words = nn.Embedding(len(VOCABULARY), word_dim)
        self.mlp = nn.Sequential(
            nn.Linear(CAPTION_LENGTH * word_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, output_dim)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.words(tokens).flatten(1))


class SupervisedHead(nn.Module):
    """Cross-entropy of a linear classifier of the scene's shape, on both views."""

    def __init__(self, feature_dim: int, settings: TrainingSettings) -> None:
        super().__init__()
        self.classifier = nn.Linear(feature_dim, len(SHAPES))

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        return (F.cross_entropy(self.classifier(first), labels) + F.cross_entropy(self.classifier(second), labels)) / 2


class SimCLRHead(nn.Module):
    """NT-Xent between the projections of the two views (SimCLR)."""

    def __init__(self, feature_dim: int, settings: TrainingSettings) -> None:
        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, settings.projection_dim)
        )
        self.temperature = settings.temperature

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        return nt_xent(self.projector(first), self.projector(second), self.temperature)


class CLIPHead(nn.Module):
    """Symmetric InfoNCE between each view's image projection and its caption's text embedding (CLIP)."""

    def __init__(self, feature_dim: int, settings: TrainingSettings) -> None:
        super().__init__()
        self.projector = nn.Linear(feature_dim, settings.projection_dim)
        self.text = TextEncoder(settings.projection_dim)
        self.temperature = settings.temperature

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        text = self.text(tokens)
        return (
            info_nce(self.projector(first), text, self.temperature)
            + info_nce(self.projector(second), text, self.temperature)
        ) / 2


HEADS: dict[str, type[nn.Module]] = {"Sup": SupervisedHead, "SSL": SimCLRHead, "Img-Txt": CLIPHead}


# --------------------------------------------------------------------------- backbones and training


def build_backbone(name: str, kwargs: Mapping[str, Any], seed: int) -> nn.Module:
    """The timm architecture `name` with `kwargs` and no classifier (num_classes=0), initialised from `seed`;
    its output, of width `num_features`, is the representation."""
    import timm

    if not timm.is_model(name):
        raise ZooError(f"timm has no model named {name!r}")
    if kwargs.get("num_classes", 0) != 0:
        raise ZooError(f"zoo backbone {name!r}: kwargs must leave num_classes at 0 (the output is the representation)")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return timm.create_model(name, **{**kwargs, "num_classes": 0})


def count_parameters(network: nn.Module) -> int:
    """The number of parameters of `network`."""
    return sum(parameter.numel() for parameter in network.parameters())


def _learning_rate(settings: TrainingSettings, step: int, total: int) -> float:
    """Linear warm-up over warmup_fraction of the steps, then cosine decay to zero."""
    warmup = max(1, round(settings.warmup_fraction * total))
    if step < warmup:
        return settings.learning_rate * (step + 1) / warmup
    return settings.learning_rate * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(
    backbone: nn.Module,
    objective: str,
    scenes: Scenes,
    settings: TrainingSettings,
    seed: int,
    *,
    name: str = "",
    progress: bool = True,
) -> list[float]:
    """Train `backbone` in place with `objective` on `scenes`; the mean loss of each epoch.

    The same seed gives the same image order and the same views for every objective and architecture.
    Deterministic on the CPU for a fixed seed and thread count.
    """
    if objective not in HEADS:
        raise ZooError(f"unknown objective {objective!r}; known: {list(TRAINED_OBJECTIVES)}")
    if len(scenes) < settings.batch_size:
        raise ZooError(f"{name}: {len(scenes)} scenes are fewer than one batch of {settings.batch_size}")
    images = torch.from_numpy(scenes.images).permute(0, 3, 1, 2).float() / 255
    labels = torch.from_numpy(scenes.attributes["shape"])
    tokens = torch.from_numpy(scenes.tokens)
    torch.manual_seed(seed)
    head = HEADS[objective](backbone.num_features, settings)
    parameters = [*backbone.parameters(), *head.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    data_order = torch.Generator().manual_seed(seed)
    views = torch.Generator().manual_seed(seed + 1)
    steps_per_epoch = len(scenes) // settings.batch_size
    total = steps_per_epoch * settings.epochs
    backbone.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc=f"train {name}", disable=not progress)
    for _ in range(settings.epochs):
        order = torch.randperm(len(scenes), generator=data_order)
        epoch_loss = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            first = normalise(augment(images[batch], settings, views))
            second = normalise(augment(images[batch], settings, views))
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(settings, len(losses) * steps_per_epoch + step, total)
            loss = head(backbone(first), backbone(second), labels[batch], tokens[batch])
            if not torch.isfinite(loss):
                raise ZooError(f"{name}: loss is {loss.item()} at epoch {len(losses) + 1}, step {step + 1}")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            epoch_loss += loss.item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        losses.append(epoch_loss / steps_per_epoch)
    bar.close()
    backbone.eval()
    return losses


# --------------------------------------------------------------------------- the zoo's results


def objective_similarity(matrix: pd.DataFrame, members: Mapping[str, tuple[str, str, int]]) -> dict[str, float]:
    """Mean similarity of zoo model pairs of one architecture: same objective (other seed) vs different objectives.

    `matrix` is a model-by-model similarity matrix; `members` maps zoo model ids to (architecture, objective, seed).
    """
    same, other = [], []
    ids = [model for model in matrix.index if model in members]
    for i, first in enumerate(ids):
        for second in ids[:i]:
            (architecture_a, objective_a, _), (architecture_b, objective_b, _) = members[first], members[second]
            if architecture_a == architecture_b:
                (same if objective_a == objective_b else other).append(matrix.loc[first, second])
    if not same or not other:
        raise ZooError("objective similarity needs two seeds of one objective and two objectives of one architecture")
    return {"same_objective": float(np.mean(same)), "different_objective": float(np.mean(other))}


def zoo_summary(
    histories: Sequence[Mapping[str, Any]],
    members: Mapping[str, tuple[str, str, int]],
    twins: Mapping[str, str],
    performance: pd.DataFrame,
    in_domain: str | None,
) -> pd.DataFrame:
    """One row per zoo model: training loss and CPU time, and its in-domain probe top-1 against its untrained twin's.

    `twins` maps architecture to its twin's model id; `performance` is the performance table.
    """
    rows = []
    top1 = performance[performance["dataset"] == in_domain].set_index("model")["top1"]
    for history in histories:
        architecture, objective, seed = members[history["model"]]
        row = {
            "model": history["model"],
            "architecture": architecture,
            "objective": objective,
            "seed": seed,
            "parameters": history["parameters"],
            "cpu_seconds": round(history["cpu_seconds"], 1),
            "first_epoch_loss": history["epoch_losses"][0],
            "last_epoch_loss": history["epoch_losses"][-1],
        }
        if in_domain is not None:
            twin = twins[architecture]
            row |= {
                "in_domain_top1": top1[history["model"]],
                "twin": twin,
                "twin_top1": top1[twin],
                "beats_twin": bool(top1[history["model"]] > top1[twin]),
            }
        rows.append(row)
    return pd.DataFrame(rows)
