"""Data sets: where images come from, checked before anything trains on them.

Every source gives a :class:`DataSet` of uint8 images ``(N, H, W)`` and int64 labels, for a
training and a test split, with class names. :func:`load_dataset` picks the source by name:

- ``mnist-5k``: 5,000 real MNIST digits embedded in lifnet (works offline);
- ``mnist``: the full MNIST set (60,000 / 10,000);
- ``fashion-mnist``: Fashion-MNIST (60,000 / 10,000);
- ``folder:PATH``: a user's own images, one subfolder per class (:mod:`lifnet.data.images`).

Where ``mnist`` and ``fashion-mnist`` are found, the first that holds them:

1. ``data_dir`` (``--data-dir``) when given, and then only there: a folder with the four
   IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
   ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzipped (``.gz``) or not),
   or such a folder named after the set inside it, or Keras's ``mnist.npz`` (the file or a
   folder holding it);
2. ``$LIFNET_DATA/<name>/`` (and ``$LIFNET_DATA/mnist.npz``);
3. lifnet's cache, ``$XDG_CACHE_HOME/lifnet/<name>/`` (``~/.cache/lifnet/<name>/``, or
   ``$LIFNET_CACHE/<name>/``);
4. the places other tools put them: Keras's ``~/.keras/datasets/mnist.npz`` and
   ``~/.keras/datasets/fashion-mnist/``, Debian's ``dataset-fashion-mnist`` package
   (``/usr/share/datasets/fashion-mnist``);
5. else downloaded into the cache from the configured mirrors (:mod:`lifnet.data.download`),
   each file checked against its SHA-256. With no mirror, or none that answers, one error
   says which files to place where.

A folder that holds some of the four files and not the others is an error naming the
missing one, never skipped. Every file is read and checked whole (sizes, label range,
image and label counts) before a set is returned: nothing half-loaded is ever used.
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
FASHION_DIRS = ["/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist"]
MNIST_NPZ = ["~/.keras/datasets/mnist.npz"]
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
STANDARD = {"mnist": DIGITS, "fashion-mnist": FASHION}


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
            if len(images) == 0:
                raise DataError(f"{self.name}: no {split} images: accepted: at least one "
                                f"(a folder set needs enough images per class to hold some "
                                f"out for testing)")
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


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _check_pair(images: np.ndarray, labels: np.ndarray, image_file: str, label_file: str,
                k: int) -> None:
    """The checks that name files: shapes, counts, labels inside the classes."""
    if images.ndim != 3:
        raise DataError(f"{image_file}: holds an array of shape {images.shape}: accepted: "
                        "images (N, H, W), an IDX file with 3 dimensions")
    if labels.ndim != 1:
        raise DataError(f"{label_file}: holds an array of shape {labels.shape}: accepted: "
                        "labels (N,), an IDX file with 1 dimension")
    if len(images) != len(labels):
        raise DataError(f"{label_file}: {len(labels)} labels but {image_file} holds "
                        f"{len(images)} images: accepted: one label per image")
    if len(labels):
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if len(bad):
            raise DataError(f"{label_file}: label {int(labels[bad[0]])} (sample {int(bad[0])}) "
                            f"is outside the {k} classes: accepted: 0..{k - 1}")


def load_idx_folder(name: str, folder: Path, class_names: list[str]) -> DataSet:
    """The four MNIST-style IDX files in ``folder`` (``.gz`` or not)."""
    folder = Path(folder)
    paths = []
    for stem in IDX_STEMS:
        found = _idx_file(folder, stem)
        if found is None:
            raise DataError(f"{folder / stem}[.gz]: file not found (the {name} folder "
                            f"{folder} must hold all four: {', '.join(IDX_STEMS)})")
        paths.append(found)
    tr_x, tr_y, te_x, te_y = (read_idx(p, n) for p, n in zip(paths, (3, 1, 3, 1)))
    k = len(class_names)
    _check_pair(tr_x, tr_y, str(paths[0]), str(paths[1]), k)
    _check_pair(te_x, te_y, str(paths[2]), str(paths[3]), k)
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise DataError(f"{paths[2]}: images of {te_x.shape[1:]} pixels but {paths[0]} holds "
                        f"{tr_x.shape[1:]}: accepted: one size for both splits")
    return DataSet(name, tr_x, tr_y.astype(np.int64), te_x, te_y.astype(np.int64),
                   list(class_names)).check()


def load_npz(name: str, path: Path, class_names: list[str]) -> DataSet:
    """Keras's ``mnist.npz``: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``."""
    import zipfile

    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(f"{path}: no array {missing[0]!r}: accepted: an .npz file "
                                f"with {', '.join(keys)}")
            arrays = [np.asarray(npz[k]) for k in keys]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: not a whole .npz file (truncated or corrupt?): {why}")
    tr_x, tr_y, te_x, te_y = arrays
    for arr, key in ((tr_x, "x_train"), (te_x, "x_test")):
        if arr.dtype != np.uint8:
            raise DataError(f"{path}: {key} has type {arr.dtype}: accepted: uint8 pixels")
    for arr, key in ((tr_y, "y_train"), (te_y, "y_test")):
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{path}: {key} has type {arr.dtype}: accepted: integer labels")
    k = len(class_names)
    _check_pair(tr_x, tr_y, f"{path}[x_train]", f"{path}[y_train]", k)
    _check_pair(te_x, te_y, f"{path}[x_test]", f"{path}[y_test]", k)
    return DataSet(name, tr_x, tr_y.astype(np.int64), te_x, te_y.astype(np.int64),
                   list(class_names)).check()


def _holds_idx(folder: Path) -> bool:
    return folder.is_dir() and any(_idx_file(folder, s) for s in IDX_STEMS)


def _from_place(name: str, place: Path) -> DataSet | None:
    """The set from ``place`` (a folder of IDX files, one with a ``name`` subfolder or an
    npz file, or an npz file), or None when it holds none of the set's files."""
    names = STANDARD[name]
    if place.is_file():
        return load_npz(name, place, names) if place.suffix == ".npz" else None
    for folder in (place, place / name):
        if _holds_idx(folder):
            return load_idx_folder(name, folder, names)
    npz = place / f"{name}.npz"
    if npz.is_file():
        return load_npz(name, npz, names)
    return None


def _expand(p: str) -> Path:
    return Path(os.path.expanduser(p))


def standard_places(name: str) -> list[Path]:
    """Where ``mnist`` or ``fashion-mnist`` is looked for when no ``data_dir`` is given."""
    from .download import cache_dir

    places = []
    if os.environ.get("LIFNET_DATA"):
        base = Path(os.environ["LIFNET_DATA"])
        places += [base / name, base / f"{name}.npz"]
    places.append(cache_dir() / name)
    places += [_expand(p) for p in (MNIST_NPZ if name == "mnist" else FASHION_DIRS)]
    return places


def load_standard(name: str, data_dir: str | None = None, mirrors=None,
                  progress=None) -> DataSet:
    """``mnist`` or ``fashion-mnist`` from the first place that holds it (module docstring),
    else downloaded into the cache."""
    from .download import DownloadError, cache_dir, fetch_dataset, mirror_list

    if data_dir:
        place = _expand(str(data_dir))
        if not place.exists():
            raise DataError(f"data_dir {place}: no such file or folder: accepted: a folder "
                            f"with the four IDX files of {name}, or an .npz file")
        found = _from_place(name, place)
        if found is None:
            raise DataError(f"data_dir {place}: holds none of the {name} files: accepted: "
                            f"{', '.join(s + '[.gz]' for s in IDX_STEMS)}, or {name}.npz")
        return found
    places = standard_places(name)
    for place in places:
        if place.exists():
            found = _from_place(name, place)
            if found is not None:
                return found
    target = cache_dir() / name
    files = ", ".join(f"{s}.gz" for s in IDX_STEMS)
    hint = (f"place {files} in {target} (or set data_dir / --data-dir to the folder that "
            f"holds them)")
    looked = ", ".join(str(p) for p in places)
    urls = mirror_list(mirrors)
    if not urls:
        raise DataError(f"{name}: data set not found (looked in {looked}) and no mirror to "
                        f"download from (data.mirrors, $LIFNET_MIRRORS): {hint}")
    try:
        folder = fetch_dataset(name, urls, target, progress)
    except DownloadError as e:
        raise DataError(f"{name}: data set not found locally and the download failed ({e}): "
                        f"{hint}")
    return load_idx_folder(name, folder, STANDARD[name])


def load_dataset(name: str, data_dir: str | None = None, *, mirrors=None, progress=None,
                 image_size: int | tuple[int, int] = 28) -> DataSet:
    """Load a data set by name (see the module docstring).

    Parameters
    ----------
    name : str
        ``mnist-5k``, ``mnist``, ``fashion-mnist`` or ``folder:PATH``.
    data_dir : str, optional
        Where the files of ``mnist`` or ``fashion-mnist`` are.
    mirrors : str or list of str, optional
        Download mirrors (:mod:`lifnet.data.download`); default ``$LIFNET_MIRRORS``.
    progress : callable, optional
        ``progress(file_name, bytes_done, bytes_total_or_None)`` during downloads.
    image_size : int or (int, int)
        Side (or height and width) in px of the images of a ``folder:`` set.
    """
    if name == "mnist-5k":
        return load_idx_folder(name, mnist5k.FOLDER, DIGITS)
    if name in STANDARD:
        return load_standard(name, data_dir, mirrors, progress)
    if name.startswith("folder:"):
        from .images import load_image_folder

        path = name[len("folder:"):]
        if not path:
            raise DataError("dataset = 'folder:': no path: accepted: folder:PATH")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        return load_image_folder(_expand(path), size, name=name)
    raise DataError(f"data.dataset = {name!r} is unknown: accepted: mnist-5k, mnist, "
                    "fashion-mnist or folder:PATH")


def load_configured(data, progress=None) -> DataSet:
    """The data set a :class:`~lifnet.config.DataConfig` names (not yet limited)."""
    return load_dataset(data.dataset, data.data_dir, mirrors=data.mirrors or None,
                        progress=progress, image_size=data.image_size)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images to float32 in [0, 1] and labels to int64 tensors."""
    return (torch.from_numpy(images).float().div_(255.0),
            torch.from_numpy(np.asarray(labels, dtype=np.int64)))
