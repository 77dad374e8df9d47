"""mnist and fashion-mnist: where they are found, and every bad file refused by name."""

import gzip
import socket
from pathlib import Path

import numpy as np
import pytest
from datahelpers import (
    STEMS,
    assert_one_line_error,
    idx_bytes,
    isolated,
    run_cli,
    small_arrays,
    write_idx_set,
    write_npz,
)

from lifnet import DataError
from lifnet.config import Config
from lifnet.data import load_configured, load_dataset
from lifnet.data.idx import encode_idx

pytestmark = pytest.mark.usefixtures("isolated")
assert isolated  # the fixture is used through pytestmark

FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY = ["--set", "network.steps=4", "--set", "network.channels=1", "--epochs", "1",
        "--set", "training.batch_size=40", "--quiet"]


def _expected():
    tr_x, tr_y, te_x, te_y = small_arrays()
    return tr_x, tr_y, te_x, te_y


def _same(ds):
    tr_x, tr_y, te_x, te_y = _expected()
    assert np.array_equal(ds.train_images, tr_x) and np.array_equal(ds.test_images, te_x)
    assert ds.train_labels.tolist() == tr_y.tolist() and ds.test_labels.tolist() == te_y.tolist()
    assert ds.train_labels.dtype == np.int64


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_data_dir_gzipped_or_not(tmp_path, gz):
    folder = write_idx_set(tmp_path / "m", gz=gz)
    ds = load_dataset("mnist", str(folder))
    _same(ds)
    assert ds.class_names == [str(d) for d in range(10)] and ds.name == "mnist"


def test_mnist_from_a_named_subfolder_of_data_dir(tmp_path):
    write_idx_set(tmp_path / "d" / "mnist")
    _same(load_dataset("mnist", str(tmp_path / "d")))


def test_mnist_from_keras_npz_file_or_folder(tmp_path):
    npz = write_npz(tmp_path / "mnist.npz")
    _same(load_dataset("mnist", str(npz)))
    _same(load_dataset("mnist", str(tmp_path)))


def test_mnist_from_lifnet_data(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "store" / "mnist")
    monkeypatch.setenv("LIFNET_DATA", str(tmp_path / "store"))
    _same(load_dataset("mnist"))


def test_mnist_from_the_cache_and_from_keras_home(tmp_path):
    keras = tmp_path / "home" / ".keras" / "datasets"
    keras.mkdir(parents=True)
    write_npz(keras / "mnist.npz")
    _same(load_dataset("mnist"))           # Keras's cache
    # lifnet's cache comes first; make it hold a different set to see which was read
    write_idx_set(tmp_path / "cache" / "lifnet" / "mnist", n_train=30, n_test=10)
    assert len(load_dataset("mnist").train_labels) == 30


def test_configuration_and_flag_reach_the_loader(tmp_path):
    folder = write_idx_set(tmp_path / "m")
    cfg = Config().with_updates({"data.dataset": "mnist", "data.data_dir": str(folder)})
    _same(load_configured(cfg.validate().data))


def test_train_with_data_dir_flag_on_mnist(tmp_path, capsys):
    folder = write_idx_set(tmp_path / "m")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", folder,
                                *TINY, "--out", out)
    assert code == 0, err
    assert "on 20 mnist test images" in stdout
    assert f'data_dir = "{folder}"' in (out / "config.toml").read_text()


def test_absent_set_with_no_mirror_says_which_files_to_place_where(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist")
    msg = str(e.value)
    target = tmp_path / "cache" / "lifnet" / "mnist"
    assert f"in {target}" in msg and "\n" not in msg
    for stem in STEMS:
        assert f"{stem}.gz" in msg


def test_absent_set_and_no_network_is_one_clear_line(tmp_path, capsys, monkeypatch):
    # a port on loopback that nobody listens on: the connection is refused
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("LIFNET_MIRRORS", f"http://127.0.0.1:{port}/{{dataset}}")
    code, _, err = run_cli(capsys, "train", "--dataset", "mnist", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "download failed", f"127.0.0.1:{port}/mnist",
                          "train-images-idx3-ubyte.gz", str(tmp_path / "cache" / "lifnet"))
    assert not (tmp_path / "r").exists()
    cache = tmp_path / "cache" / "lifnet" / "mnist"
    assert not cache.exists() or not any(cache.iterdir())


def test_explicit_data_dir_that_is_missing_or_empty_is_refused(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds none of the mnist files"):
        load_dataset("mnist", str(tmp_path / "empty"))


# -- bad files: each one line, exit 2, naming the file, and no run folder -----------------


def _bad_set(tmp_path, fault):
    folder = write_idx_set(tmp_path / "bad")
    raw = idx_bytes()
    if fault == "missing":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
        return folder, "t10k-labels-idx1-ubyte", "file not found"
    if fault == "truncated gzip":
        path = folder / "train-images-idx3-ubyte.gz"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return folder, "train-images-idx3-ubyte.gz", "truncated gzip"
    if fault == "wrong magic":
        bad = b"\x00\x00\x08\x05" + raw["train-labels-idx1-ubyte"][4:]
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bad))
        return folder, "train-labels-idx1-ubyte.gz", "wrong IDX magic number 0x00000805"
    if fault == "counts differ":
        labels = np.zeros(19, dtype=np.uint8)
        (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
        return folder, "t10k-labels-idx1-ubyte.gz", "19 labels but"
    if fault == "labels outside":
        labels = (np.arange(60) % 10).astype(np.uint8)
        labels[7] = 12
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
        return folder, "train-labels-idx1-ubyte.gz", "label 12 (sample 7) is outside"
    if fault == "truncated data":
        path = folder / "t10k-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(raw["t10k-images-idx3-ubyte"][:-100]))
        return folder, "t10k-images-idx3-ubyte.gz", "truncated or corrupt"
    if fault == "images as labels":
        path = folder / "train-labels-idx1-ubyte.gz"
        path.write_bytes(gzip.compress(raw["train-images-idx3-ubyte"]))
        return folder, "train-labels-idx1-ubyte.gz", "wrong IDX magic number 0x00000803 for labels"
    raise AssertionError(fault)


FAULTS = ["missing", "truncated gzip", "wrong magic", "counts differ", "labels outside",
          "truncated data", "images as labels"]


@pytest.mark.parametrize("fault", FAULTS)
def test_bad_idx_file_is_named_in_one_line_and_nothing_trains(tmp_path, capsys, fault):
    folder, file_name, words = _bad_set(tmp_path, fault)
    with pytest.raises(DataError) as e:
        load_dataset("mnist", str(folder))
    assert file_name in str(e.value) and words in str(e.value)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", folder,
                                "--out", out, "--quiet")
    assert_one_line_error(code, err, file_name, words)
    assert not out.exists() and stdout == ""


def test_bad_npz_files(tmp_path):
    npz = write_npz(tmp_path / "mnist.npz")
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"mnist.npz: not a whole .npz file"):
        load_dataset("mnist", str(npz))
    tr_x, tr_y, te_x, _ = small_arrays()
    np.savez(npz, x_train=tr_x, y_train=tr_y, x_test=te_x)
    with pytest.raises(DataError, match=r"mnist.npz: no array 'y_test'"):
        load_dataset("mnist", str(npz))
    np.savez(npz, x_train=tr_x, y_train=tr_y, x_test=te_x, y_test=np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"mnist.npz\[y_test\]: 3 labels but"):
        load_dataset("mnist", str(npz))
    np.savez(npz, x_train=tr_x.astype(np.float32), y_train=tr_y, x_test=te_x, y_test=tr_y)
    with pytest.raises(DataError, match=r"x_train has type float32: accepted: uint8"):
        load_dataset("mnist", str(npz))


def test_unknown_names_and_empty_folder_path():
    with pytest.raises(DataError, match=r"accepted: mnist-5k, mnist, fashion-mnist or folder"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="folder:PATH"):
        load_dataset("folder:")


# -- the real Fashion-MNIST (Debian's dataset-fashion-mnist) --------------------------------


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist is "
                    "not installed (/usr/share/datasets/fashion-mnist absent)")
def test_real_fashion_mnist_is_found_offline():
    ds = load_dataset("fashion-mnist")
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10
    assert np.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    # garments, not digits: about half the pixels are lit
    assert 0.4 < (ds.train_images > 0).mean() < 0.6
