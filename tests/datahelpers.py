"""Small data sets and images the tests write themselves (shared by the data tests)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from lifnet.cli import main
from lifnet.data.idx import encode_idx

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def small_arrays(n_train=60, n_test=20, k=10, seed=0):
    """Images whose class is visible (a bright bar at row 2 + 2*label) and their labels."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (n_train, n_test):
        labels = (np.arange(n) % k).astype(np.uint8)
        images = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * (c % 12), 4:24] = 255
        out += [images, labels]
    return out


def idx_bytes(n_train=60, n_test=20, k=10, seed=0) -> dict[str, bytes]:
    """The four IDX files (uncompressed bytes) of a small set, by stem."""
    return {stem: encode_idx(a) for stem, a in zip(STEMS, small_arrays(n_train, n_test, k, seed))}


def write_idx_set(folder: Path, gz: bool = True, **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, raw in idx_bytes(**kw).items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
        else:
            (folder / stem).write_bytes(raw)
    return folder


def gz_files(**kw) -> dict[str, bytes]:
    """The four files as a mirror serves them: ``{name.gz: gzipped bytes}``."""
    return {f"{stem}.gz": gzip.compress(raw, mtime=0) for stem, raw in idx_bytes(**kw).items()}


def write_npz(path: Path, **kw) -> Path:
    tr_x, tr_y, te_x, te_y = small_arrays(**kw)
    np.savez(path, x_train=tr_x, y_train=tr_y, x_test=te_x, y_test=te_y)
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``lifnet ARGS`` in this process: status, standard output, standard error."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    # what a terminal shows: each line as left after its last carriage return
    shown = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]
    lines = [line for line in shown if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("lifnet: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


def png_bytes(width: int, height: int, bit_depth: int = 1, colour_type: int = 0,
              rows: bytes | None = None) -> bytes:
    """A PNG file written by hand (any size cheaply: rows of zeros compress to nothing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row_bytes = (width * channels * bit_depth + 7) // 8
    if rows is None:
        comp = zlib.compressobj(9)
        line = b"\x00" * (row_bytes + 1)
        data = b"".join(comp.compress(line) for _ in range(height)) + comp.flush()
    else:
        data = zlib.compress(rows, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real cache, home, data folder or mirror: everything under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("LIFNET_DATA", "LIFNET_CACHE", "LIFNET_MIRRORS", "http_proxy", "https_proxy",
                "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return tmp_path
