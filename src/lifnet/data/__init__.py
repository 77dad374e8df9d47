"""Data sets: where images come from, checked before anything trains on them.

Every source gives a :class:`DataSet` of uint8 images ``(N, H, W)`` and int64 labels, for a
training and a test split, with class names. :func:`load_dataset` picks the source by name:

- ``mnist-5k``: 5,000 real MNIST digits embedded in lifnet (works offline);
- ``fashion-mnist``: the four IDX files, from ``data_dir`` or the places listed in
  :data:`FASHION_DIRS` (Debian's ``dataset-fashion-mnist`` package among them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import mnist5k
from .idx import read_idx

DIGITS = [str(d) for d in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
FASHION_DIRS = ["/usr/share/datasets/fashion-mnist"]


@dataclass
class DataSet:
    """Images and labels of both splits; images uint8 ``(N, H, W)``, labels int64 ``(N,)``."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str] = field(default_factory=lambda: list(DIGITS))

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[1:3])

    def check(self) -> DataSet:
        """Refuse a set whose parts do not fit together (nothing half-loaded is used)."""
        k = len(self.class_names)
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.ndim != 3:
                raise DataError(f"{self.name}: {split} images have shape {images.shape}: "
                                "accepted: (N, H, W)")
            if len(images) != len(labels):
                raise DataError(f"{self.name}: {len(images)} {split} images but {len(labels)} "
                                "labels")
            if len(labels) and (labels.min() < 0 or labels.max() >= k):
                raise DataError(f"{self.name}: {split} label {int(labels.max())} outside the "
                                f"{k} classes 0..{k - 1}")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DataError(f"{self.name}: train images {self.train_images.shape[1:]} and test "
                            f"images {self.test_images.shape[1:]} differ in size")
        return self

    def limit(self, train: int | None = None, test: int | None = None) -> DataSet:
        """The first ``train`` / ``test`` samples of each split, classes interleaved."""
        def take(images, labels, n):
            if n is None or n >= len(labels):
                return images, labels
            # round-robin over classes so a small subset still holds every class
            order = np.argsort(_rank_within_class(labels), kind="stable")[:n]
            order.sort()
            return images[order], labels[order]
        tr = take(self.train_images, self.train_labels, train)
        te = take(self.test_images, self.test_labels, test)
        return DataSet(self.name, *tr, *te, class_names=list(self.class_names))


def _rank_within_class(labels: np.ndarray) -> np.ndarray:
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rank[rows] = np.arange(len(rows))
    return rank


def load_idx_folder(name: str, folder: Path, class_names: list[str]) -> DataSet:
    """The four MNIST-style IDX files in ``folder`` (``.gz`` or not)."""
    def find(stem: str) -> Path:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.exists():
                return candidate
        raise DataError(f"{folder / stem}[.gz]: file not found")
    parts = [read_idx(find(stem)) for stem in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    for part, kind in zip(parts, ("images", "labels", "images", "labels")):
        if (part.ndim != 3) if kind == "images" else (part.ndim != 1):
            raise DataError(f"{folder}: an IDX {kind} file has shape {part.shape}")
    tr_x, tr_y, te_x, te_y = parts
    return DataSet(name, tr_x, tr_y.astype(np.int64), te_x, te_y.astype(np.int64),
                   class_names).check()


def _first_folder(data_dir: str | None, defaults: list[str], name: str) -> Path:
    candidates = [Path(p) for p in ([data_dir] if data_dir else [])]
    if os.environ.get("LIFNET_DATA"):
        candidates.append(Path(os.environ["LIFNET_DATA"]) / name)
    candidates += [Path(p) for p in defaults]
    for folder in candidates:
        if folder.is_dir():
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise DataError(f"{name}: data set not found; looked in {where}: place the four IDX files "
                    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in one of them "
                    "or pass --data-dir")


def load_dataset(name: str, data_dir: str | None = None) -> DataSet:
    """Load a data set by name (see the module docstring)."""
    if name == "mnist-5k":
        return load_idx_folder(name, mnist5k.FOLDER, DIGITS)
    if name == "fashion-mnist":
        folder = _first_folder(data_dir, FASHION_DIRS, name)
        return load_idx_folder(name, folder, FASHION)
    raise DataError(f"dataset = {name!r} is unknown: accepted: mnist-5k, fashion-mnist")


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images to float32 in [0, 1] and labels to int64 tensors."""
    return (torch.from_numpy(images).float().div_(255.0),
            torch.from_numpy(np.asarray(labels, dtype=np.int64)))
