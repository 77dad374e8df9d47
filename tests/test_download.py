"""The downloader against a real HTTP server that each test starts on 127.0.0.1."""

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from datahelpers import assert_one_line_error, gz_files, isolated, run_cli, small_arrays

from lifnet import ConfigError, DataError
from lifnet.data import download, load_dataset
from lifnet.data.download import DownloadError, FileSpec, fetch_dataset, file_url, mirror_list

pytestmark = pytest.mark.usefixtures("isolated")
assert isolated


class Mirror:
    """A loopback HTTP server serving ``files``; ``faults[name]`` makes it misbehave:
    ``"cut"`` closes the connection halfway through the first request for that file,
    ``"cut-always"`` through every one, ``"wrong"`` serves other bytes."""

    def __init__(self, files: dict[str, bytes], prefix: str = "/mnist/"):
        self.files, self.prefix, self.faults = dict(files), prefix, {}
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.requests.append(self.path)
                name = self.path[len(mirror.prefix):]
                if not self.path.startswith(mirror.prefix) or name not in mirror.files:
                    self.send_error(404)
                    return
                data = mirror.files[name]
                fault = mirror.faults.get(name)
                if fault == "wrong":
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                seen = sum(1 for r in mirror.requests if r == self.path)
                if fault == "cut-always" or (fault == "cut" and seen == 1):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, name: str) -> int:
        return sum(1 for r in self.requests if r.endswith("/" + name))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(monkeypatch):
    """A mirror of a small MNIST-like set, and lifnet told its checksums."""
    files = gz_files()
    specs = tuple(FileSpec(n, hashlib.sha256(d).hexdigest(), len(d)) for n, d in files.items())
    monkeypatch.setitem(download.FILES, "mnist", specs)
    mirror = Mirror(files)
    yield mirror
    mirror.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_good_download_into_the_cache_then_found_there(served, tmp_path, monkeypatch):
    monkeypatch.setenv("LIFNET_MIRRORS", served.url + "/{dataset}/")
    seen = []
    ds = load_dataset("mnist", progress=lambda n, done, total: seen.append((n, done, total)))
    tr_x, _, _, te_y = small_arrays()
    assert np.array_equal(ds.train_images, tr_x) and ds.test_labels.tolist() == te_y.tolist()
    cache = tmp_path / "cache" / "lifnet" / "mnist"
    assert leftovers(cache) == sorted(served.files)
    for name, data in served.files.items():
        assert (cache / name).read_bytes() == data
        ticks = [(d, t) for n, d, t in seen if n == name]
        assert ticks[0] == (0, len(data)) and ticks[-1] == (len(data), len(data))
        assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    # the second time nothing is fetched
    before = len(served.requests)
    load_dataset("mnist")
    assert len(served.requests) == before


def test_wrong_checksum_is_rejected_and_nothing_is_left(served, tmp_path):
    served.faults["t10k-images-idx3-ubyte.gz"] = "wrong"
    folder = tmp_path / "cache" / "lifnet" / "mnist"
    with pytest.raises(DownloadError, match=r"t10k-images-idx3-ubyte.gz: download failed: "
                       r"http://127.0.0.1:\d+/mnist/t10k-images-idx3-ubyte.gz: SHA-256 "):
        fetch_dataset("mnist", [served.url + "/{dataset}"], folder, backoff=0)
    assert "t10k-images-idx3-ubyte.gz" not in leftovers(folder)
    assert not [n for n in leftovers(folder) if n.endswith(".part")]
    assert served.count("t10k-images-idx3-ubyte.gz") == 1     # not asked again


def test_wrong_checksum_through_the_cli_leaves_an_empty_cache(served, tmp_path, capsys,
                                                             monkeypatch):
    for name in served.files:
        served.faults[name] = "wrong"
    monkeypatch.setenv("LIFNET_MIRRORS", served.url + "/mnist")
    code, _, err = run_cli(capsys, "train", "--dataset", "mnist", "--out", tmp_path / "run")
    assert_one_line_error(code, err, "download failed", "SHA-256",
                          "train-images-idx3-ubyte.gz")
    assert leftovers(tmp_path / "cache") == []
    assert not (tmp_path / "run").exists()


def test_connection_closed_halfway_leaves_no_partial_file_and_a_retry_succeeds(served, tmp_path):
    served.faults["train-images-idx3-ubyte.gz"] = "cut"
    folder = tmp_path / "dl"
    fetch_dataset("mnist", [served.url + "/mnist/"], folder, backoff=0)
    assert served.count("train-images-idx3-ubyte.gz") == 2
    assert leftovers(folder) == sorted(served.files)
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == \
        served.files["train-images-idx3-ubyte.gz"]


def test_a_server_that_always_breaks_off_fails_after_the_retries(served, tmp_path):
    served.faults["train-labels-idx1-ubyte.gz"] = "cut-always"
    folder = tmp_path / "dl"
    with pytest.raises(DownloadError, match=r"connection closed after \d+ of \d+ bytes"):
        fetch_dataset("mnist", [served.url + "/mnist"], folder, retries=3, backoff=0)
    assert served.count("train-labels-idx1-ubyte.gz") == 3
    assert "train-labels-idx1-ubyte.gz" not in leftovers(folder)
    assert not [n for n in leftovers(folder) if n.endswith(".part")]


def test_next_mirror_after_a_missing_file_and_a_bad_copy_is_replaced(served, tmp_path):
    empty = Mirror({}, prefix="/nothing/")
    try:
        folder = tmp_path / "dl"
        folder.mkdir()
        (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"an old, damaged copy")
        fetch_dataset("mnist", [empty.url + "/nothing", served.url + "/mnist"], folder,
                      backoff=0)
        assert empty.count("train-images-idx3-ubyte.gz") == 1        # 404: not retried
        assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == \
            served.files["t10k-labels-idx1-ubyte.gz"]
    finally:
        empty.close()


def test_cli_download_draws_a_bar_and_trains(served, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIFNET_MIRRORS", served.url + "/{dataset}")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--dataset", "mnist", "--out", out,
                                "--set", "network.steps=4", "--set", "network.channels=1",
                                "--epochs", "1")
    assert code == 0, err
    assert "train-images-idx3-ubyte.gz" in err                 # the progress bar
    assert "on 20 mnist test images" in stdout


def test_mirror_setting_and_urls(monkeypatch):
    assert mirror_list("http://127.0.0.1:1/a, file:///srv/b") == ["http://127.0.0.1:1/a",
                                                                  "file:///srv/b"]
    monkeypatch.setenv("LIFNET_MIRRORS", "http://127.0.0.1:2/x http://127.0.0.1:3/y")
    assert mirror_list(None) == ["http://127.0.0.1:2/x", "http://127.0.0.1:3/y"]
    monkeypatch.delenv("LIFNET_MIRRORS")
    assert mirror_list(None) == [] and download.FILES["mnist"]     # lifnet ships no address
    with pytest.raises(ConfigError, match=r"data.mirrors: 'ftp://h/x' is not a URL"):
        mirror_list("ftp://h/x")
    assert file_url("http://127.0.0.1/d/{dataset}/", "fashion-mnist", "a.gz") == \
        "http://127.0.0.1/d/fashion-mnist/a.gz"
    with pytest.raises(DataError, match="no download known"):
        fetch_dataset("cifar", ["http://127.0.0.1:1/"])


def test_file_mirror(served, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, data in served.files.items():
        (src / name).write_bytes(data)
    folder = fetch_dataset("mnist", [src.as_uri()], tmp_path / "dl")
    assert leftovers(folder) == sorted(served.files)
