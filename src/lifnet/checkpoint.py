"""Run folders and weight files: written atomically, read without running code.

A run folder holds::

    config.toml          the configuration used (``lifnet train --config`` reads it back)
    metrics.jsonl        one JSON object per epoch
    model.safetensors    the trained weights, with JSON metadata (below)
    result.json          the final figures (test accuracy, error energy, timing, ...)

Weights are stored with safetensors, which holds tensors and a string-to-string metadata
table and nothing that can run on load. The metadata carry ``lifnet`` (the version),
``config`` (the TOML text), ``image_size``, ``class_names`` and ``epoch`` as JSON strings.
Every file is written to a temporary file in the same folder and renamed into place, so a
reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import Config
from .errors import CheckpointError, LifnetError
from .network import PatchNet

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_line(path: str | Path, record: dict) -> None:
    """Append one JSON line (metrics are only ever appended, a line at a time)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def save_model(path: str | Path, model: PatchNet, cfg: Config, class_names: list[str],
               epoch: int, extra: dict[str, Any] | None = None) -> None:
    """Weights and the metadata needed to rebuild the network, atomically."""
    from . import __version__

    meta = {"lifnet": json.dumps(__version__), "config": cfg.to_toml(comments=False),
            "image_size": json.dumps(list(model.image_size)),
            "class_names": json.dumps(class_names), "epoch": json.dumps(epoch)}
    for key, value in (extra or {}).items():
        meta[key] = json.dumps(value)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, st_save(tensors, metadata=meta))


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; CheckpointError if it is not whole."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror}")
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a whole safetensors file (truncated or altered?): "
                              f"{e}")
    return tensors, meta


def load_model(run_dir: str | Path) -> tuple[PatchNet, Config, dict[str, Any]]:
    """The trained network of a run folder, its configuration and metadata."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: not a run folder (no such directory)")
    tensors, meta = read_safetensors(run_dir / MODEL_FILE)
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        cfg = Config.from_dict(tomllib.loads(meta["config"]), source=str(run_dir / MODEL_FILE))
        info = {k: json.loads(v) for k, v in meta.items() if k != "config"}
        image_size = tuple(info["image_size"])
    except (KeyError, ValueError, LifnetError) as e:
        raise CheckpointError(f"{run_dir / MODEL_FILE}: metadata missing or invalid: {e}")
    model = PatchNet(cfg.validate(), image_size)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0:2]
        raise CheckpointError(f"{run_dir / MODEL_FILE}: weights do not match the network of "
                              f"its configuration: {' '.join(first)}")
    model.eval()
    return model, cfg, info
