"""Reader and writer of the IDX format of the MNIST files (gzipped or not).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data. lifnet reads unsigned
bytes (type 0x08) only, as MNIST and Fashion-MNIST use. Every fault (missing file,
truncated gzip, wrong magic number, sizes that do not match the header) raises
:class:`~lifnet.errors.DataError` naming the file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

UBYTE = 0x08


def parse_idx(raw: bytes, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into a uint8 array.

    ``ndim``: the number of dimensions the caller expects (3 for images, 1 for labels); a
    file announcing another number has the wrong magic number for its role.
    """
    if len(raw) < 4:
        raise DataError(f"{name}: too short for an IDX file ({len(raw)} bytes)")
    expected, (zero, dtype, ndim) = ndim, (raw[0:2], raw[2], raw[3])
    if expected is not None and ndim != expected and zero == b"\x00\x00" and dtype == UBYTE:
        kind = "images" if expected == 3 else "labels"
        raise DataError(f"{name}: wrong IDX magic number 0x{raw[:4].hex()} for {kind}: "
                        f"accepted: 0x000008{expected:02x}")
    if zero != b"\x00\x00" or dtype != UBYTE or not 1 <= ndim <= 4:
        raise DataError(f"{name}: wrong IDX magic number 0x{raw[:4].hex()}: accepted: "
                        "0x00000801 (labels) or 0x00000803 (images)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(f"{name}: holds {len(raw) - header} data bytes but its header "
                        f"announces shape {shape} ({expected} bytes): the file is truncated "
                        "or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped (by its magic bytes) or not."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found")
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip file ({e})")
    return parse_idx(raw, str(path), ndim)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX; gzip when the name ends in ``.gz`` (reproducibly, mtime 0)."""
    path = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
