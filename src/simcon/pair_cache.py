"""On-disk cache of pairwise similarity values, keyed by the content of both models' features.

Layout: ``<root>/<metric>/<key[:2]>/<key>.json``, where ``key`` is the sha256 of the metric
name, the caller's context key and the (sorted) content digests of the two feature arrays.
Each file holds those key fields and the value; a file that does not parse or whose fields
do not match is treated as absent. Files are written to a temporary name and renamed into
place, so an interrupted run never leaves a partly written entry under a final name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np


def array_digest(array: np.ndarray) -> str:
    """The sha256 hex digest of an array's shape, dtype and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"shape": list(array.shape), "dtype": array.dtype.str}).encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


class PairCache:
    """Similarity values of unordered model pairs for one metric and one context key."""

    def __init__(self, root: str | os.PathLike, metric: str, context_key: str) -> None:
        self.root = Path(root)
        self.metric = metric
        self.context_key = context_key

    def _record(self, digest_a: str, digest_b: str) -> dict:
        return {
            "metric": self.metric,
            "context_key": self.context_key,
            "models": sorted([digest_a, digest_b]),
        }

    def _path(self, record: dict) -> Path:
        key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        return self.root / self.metric / key[:2] / f"{key}.json"

    def get(self, digest_a: str, digest_b: str) -> float | None:
        """The stored value of the pair, or None if absent or unreadable."""
        record = self._record(digest_a, digest_b)
        try:
            stored = json.loads(self._path(record).read_text())
            value = float(stored.pop("value"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        if stored != record or not math.isfinite(value):
            return None
        return value

    def put(self, digest_a: str, digest_b: str, value: float) -> None:
        """Store the value of the pair atomically."""
        record = self._record(digest_a, digest_b)
        path = self._path(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({**record, "value": float(value)}, handle)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
