"""Generated scenes for the model zoo: one shape with named attributes on a textured background, and its caption."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from simcon.vocabulary import GENERATED_CLASSES

SHAPES = GENERATED_CLASSES["scenes"]
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
    "white": (245, 245, 245),
    "orange": (250, 140, 20),
}
SIZES = {"small": (0.14, 0.19), "large": (0.24, 0.30)}  # radius as a fraction of the image side
VERTICAL = ("top", "bottom")
HORIZONTAL = ("left", "right")
BACKGROUNDS = ("plain", "striped", "dotted", "checkered", "noisy")
ATTRIBUTES = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "size": tuple(SIZES),
    "vertical": VERTICAL,
    "horizontal": HORIZONTAL,
    "background": BACKGROUNDS,
}
CAPTION_TEMPLATE = "a {size} {colour} {shape} at the {vertical} {horizontal} on a {background} background"
VOCABULARY = ("a", "at", "the", "on", "background", *(word for values in ATTRIBUTES.values() for word in values))
CAPTION_LENGTH = len(CAPTION_TEMPLATE.split())
SUPERSAMPLING = 2  # draw at twice the resolution, then downsample: smooth edges at 32 px


@dataclass(frozen=True)
class Scenes:
    """Images (N, H, W, 3) uint8, one integer array (N,) per attribute, and caption tokens (N, CAPTION_LENGTH)."""

    images: np.ndarray
    attributes: dict[str, np.ndarray]
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for an .npz file: images, tokens and one per attribute."""
        return {"images": self.images, "tokens": self.tokens, **self.attributes}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Scenes:
        """The scenes `to_arrays` wrote; KeyError names a missing array."""
        return cls(
            np.asarray(arrays["images"]),
            {name: np.asarray(arrays[name]) for name in ATTRIBUTES},
            np.asarray(arrays["tokens"]),
        )


def caption(attributes: dict[str, int]) -> str:
    """The caption of one scene from its attribute indices, e.g. 'a small red circle at the top left on a plain background'."""
    return CAPTION_TEMPLATE.format(**{name: ATTRIBUTES[name][index] for name, index in attributes.items()})


def tokenize(text: str) -> np.ndarray:
    """Indices into VOCABULARY of the words of a caption; ValueError names an unknown word."""
    words = text.split()
    unknown = [word for word in words if word not in VOCABULARY]
    if unknown:
        raise ValueError(f"caption {text!r} has words outside the vocabulary: {unknown}")
    return np.array([VOCABULARY.index(word) for word in words], dtype=np.int64)


def _background(rng: np.random.Generator, kind: str, side: int) -> np.ndarray:
    """A dark background of random colour with the given texture, float (side, side, 3) in [0, 255]."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64) / side
    period = rng.uniform(0.12, 0.25)
    phase = rng.uniform(0, 1, size=2)
    if kind == "plain":
        pattern = np.zeros((side, side))
    elif kind == "striped":
        angle = rng.uniform(0, np.pi)
        pattern = (np.sin(2 * np.pi * ((x * np.cos(angle) + y * np.sin(angle)) / period + phase[0])) > 0).astype(float)
    elif kind == "dotted":
        u, v = (x / period + phase[0]) % 1 - 0.5, (y / period + phase[1]) % 1 - 0.5
        pattern = (u**2 + v**2 < 0.06).astype(float)
    elif kind == "checkered":
        pattern = ((np.floor(x / period + phase[0]) + np.floor(y / period + phase[1])) % 2).astype(float)
    else:
        pattern = rng.uniform(0, 1, size=(side, side))
    low = rng.integers(0, 70, size=3)
    high = low + rng.integers(30, 70, size=3)
    return low + pattern[..., None] * (high - low)


def draw_scene(rng: np.random.Generator, attributes: dict[str, int], size: int) -> np.ndarray:
    """One (size, size, 3) uint8 image of the scene `attributes` describes; nuisances (exact place, hue of background) from `rng`."""
    side = size * SUPERSAMPLING
    image = Image.fromarray(_background(rng, BACKGROUNDS[attributes["background"]], side).astype(np.uint8))
    radius = rng.uniform(*SIZES[tuple(SIZES)[attributes["size"]]]) * side
    offset = rng.uniform(radius / 2, side / 2 - radius - 1, size=2)  # the centre's distance from the midlines
    cx = side / 2 + (-offset[0] if attributes["horizontal"] == 0 else offset[0])
    cy = side / 2 + (-offset[1] if attributes["vertical"] == 0 else offset[1])
    colour = COLOURS[tuple(COLOURS)[attributes["colour"]]]
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    draw = ImageDraw.Draw(image)
    shape = SHAPES[attributes["shape"]]
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        half = radius * 0.85
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=colour)
    elif shape == "triangle":
        draw.polygon(
            [(cx, cy - radius), (cx - radius, cy + radius * 0.8), (cx + radius, cy + radius * 0.8)], fill=colour
        )
    elif shape == "cross":
        bar = radius / 3
        draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=colour)
        draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=colour)
    else:
        draw.ellipse(box, outline=colour, width=max(2, round(radius / 2.5)))
    return np.asarray(image.resize((size, size), Image.Resampling.BOX))


def sample_attributes(rng: np.random.Generator) -> dict[str, int]:
    """Attribute indices drawn uniformly and independently."""
    return {name: int(rng.integers(len(values))) for name, values in ATTRIBUTES.items()}


def generate_scenes(count: int, size: int, seed: int) -> Scenes:
    """`count` random scenes of `size` pixels with their attributes and caption tokens, the same for the same seed."""
    rng = np.random.default_rng(seed)
    drawn = [sample_attributes(rng) for _ in range(count)]
    images = np.stack([draw_scene(rng, attributes, size) for attributes in drawn])
    attributes = {name: np.array([a[name] for a in drawn], dtype=np.int64) for name in ATTRIBUTES}
    tokens = np.stack([tokenize(caption(a)) for a in drawn])
    return Scenes(images, attributes, tokens)


def draw_scene_of_shape(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A scene whose shape is SHAPES[label] and whose other attributes are random: a labelled dataset domain."""
    attributes = sample_attributes(rng)
    attributes["shape"] = label
    return draw_scene(rng, attributes, size)
