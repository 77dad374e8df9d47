"""Run folders and weight files: written atomically, read without running code.

A run folder holds::

    config.toml          the configuration used (``lifnet train --config`` reads it back)
    metrics.jsonl        one JSON object per epoch
    metrics.csv          the same, as a table
    model.safetensors    the trained weights, with JSON metadata (below)
    checkpoint.safetensors  everything ``lifnet train --resume`` needs (below)
    result.json          the final figures (test accuracy, error energy, timing, ...)
    plots/               the figures of :mod:`lifnet.plots`

Weights are stored with safetensors, which holds tensors and a string-to-string metadata
table and nothing that can run on load. The metadata carry ``lifnet`` (the version),
``config`` (the TOML text), ``image_size``, ``class_names`` and ``epoch`` as JSON strings.
Every file is written to a temporary file in the same folder and renamed into place, so a
reader sees the old file or the new one, never half of one.

A checkpoint (:func:`save_checkpoint`) holds the weights (``model/NAME``), the optimiser's
state tensors (``optimizer/INDEX/KEY``) and the random generator states (``rng/torch``, the
global torch generator; ``rng/epoch``, the current epoch's shuffling generator) as tensors,
and as JSON metadata the configuration, the position (epoch to run next, batches of it done,
the epoch's running sums), the optimiser's scalars, class names, image size and lifnet's
version. A SHA-256 digest of all of it is stored too, so a file that was altered after it
was written is refused (:class:`~lifnet.errors.CheckpointError`), as is a truncated one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import Config, tomllib
from .errors import CheckpointError, ConfigError, LifnetError
from .network import PatchNet

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_CSV = "metrics.csv"
CHECKPOINT_FORMAT = "lifnet-checkpoint-1"


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not path.parent.is_dir():
        raise ConfigError(f"{path}: cannot write there: the folder {path.parent} does not "
                          "exist: accepted: a file in an existing folder")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)    # as open() would make it, not mkstemp's 0600
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
    meta["digest"] = _digest(tensors, meta)
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
    if not (run_dir / MODEL_FILE).exists():
        raise CheckpointError(f"{run_dir}: not a run folder, or a run stopped before its "
                              f"first epoch ended (no {MODEL_FILE}): accepted: the folder of "
                              "a `lifnet train` run")
    tensors, meta = read_safetensors(run_dir / MODEL_FILE)
    # a model written by lifnet carries the SHA-256 of its tensors and metadata
    if "digest" in meta and meta["digest"] != _digest(tensors, meta):
        raise CheckpointError(f"{run_dir / MODEL_FILE}: its contents do not match the digest "
                              "written with it: the file was altered or damaged")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{run_dir / MODEL_FILE}: weights {', '.join(bad)} hold NaN or "
                              "infinite values: accepted: finite weights")
    try:
        cfg = Config.from_dict(tomllib.loads(meta["config"]), source=str(run_dir / MODEL_FILE))
        info = {k: json.loads(v) for k, v in meta.items() if k not in ("config", "digest")}
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


# -- metrics --------------------------------------------------------------------------


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The epochs of ``metrics.jsonl`` (an empty list when there is none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: line {n} is not JSON")
    return records


def write_metrics(run_dir: str | Path, records: list[dict]) -> None:
    """Rewrite ``metrics.jsonl`` with ``records``, and ``metrics.csv`` from them (atomic)."""
    run_dir = Path(run_dir)
    atomic_write(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records))
    write_metrics_csv(run_dir, records)


def write_metrics_csv(run_dir: str | Path, records: list[dict]) -> None:
    """``metrics.csv``: one row per epoch, the columns of ``metrics.jsonl`` (atomic)."""
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    atomic_write(Path(run_dir) / METRICS_CSV, out.getvalue())


# -- checkpoints ----------------------------------------------------------------------


@dataclass
class Checkpoint:
    """What a checkpoint file holds, checked (see :func:`load_checkpoint`)."""

    config: Config
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[int, dict[str, Any]]
    optimizer_groups: list[dict[str, Any]]
    position: Any                     # lifnet.training.Position
    torch_rng_state: torch.Tensor
    class_names: list[str]
    image_size: tuple[int, int]
    lifnet_version: str


def _digest(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    h.update(json.dumps({k: v for k, v in meta.items() if k != "digest"},
                        sort_keys=True).encode())
    return h.hexdigest()


def save_checkpoint(path: str | Path, trainer: Any, class_names: list[str]) -> None:
    """Write ``trainer``'s weights, optimiser state, position and RNG states, atomically.

    ``trainer`` is a :class:`lifnet.training.Trainer`.
    """
    from . import __version__

    model, cfg, pos = trainer.model, trainer.cfg, trainer.position
    tensors = {f"model/{k}": v.detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    opt = trainer.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in opt["param_groups"]]
    tensors["rng/torch"] = torch.get_rng_state()
    if pos.generator_state is not None:
        tensors["rng/epoch"] = pos.generator_state.clone()
    meta = {
        "format": CHECKPOINT_FORMAT,
        "lifnet": json.dumps(__version__),
        "config": cfg.to_toml(comments=False),
        "image_size": json.dumps(list(model.image_size)),
        "class_names": json.dumps(class_names),
        "position": json.dumps({"epoch": pos.epoch, "batch": pos.batch, "sums": pos.sums,
                                "finished": pos.finished}),
        "optimizer": json.dumps({"type": type(trainer.optimizer).__name__,
                                 "param_groups": groups, "scalars": scalars}),
    }
    meta["digest"] = _digest(tensors, meta)
    atomic_write(path, st_save(tensors, metadata=meta))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint; CheckpointError if it is truncated, altered or foreign.

    Nothing in the file is executed: safetensors holds tensors, the rest is JSON and TOML.
    """
    from .training import Position

    path = Path(path)
    tensors, meta = read_safetensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a lifnet checkpoint (format "
                              f"{meta.get('format')!r}: accepted: {CHECKPOINT_FORMAT!r})")
    if meta.get("digest") != _digest(tensors, meta):
        raise CheckpointError(f"{path}: its contents do not match the digest written with "
                              "them: the file was altered or damaged")
    try:
        cfg = Config.from_dict(tomllib.loads(meta["config"]), source=str(path)).validate()
        pos = json.loads(meta["position"])
        opt = json.loads(meta["optimizer"])
        position = Position(epoch=int(pos["epoch"]), batch=int(pos["batch"]),
                            generator_state=tensors.get("rng/epoch"),
                            sums=dict(pos["sums"]), finished=bool(pos["finished"]))
        if position.batch > 0 and position.generator_state is None:
            raise ValueError("a position inside an epoch without its generator state")
        state: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if name.startswith("optimizer/"):
                _, index, key = name.split("/", 2)
                state.setdefault(int(index), {})[key] = value
        for index, values in opt["scalars"].items():
            state.setdefault(int(index), {}).update(values)
        ckpt = Checkpoint(
            config=cfg,
            model_state={k[len("model/"):]: v for k, v in tensors.items()
                         if k.startswith("model/")},
            optimizer_state=state, optimizer_groups=list(opt["param_groups"]),
            position=position, torch_rng_state=tensors["rng/torch"],
            class_names=list(json.loads(meta["class_names"])),
            image_size=tuple(json.loads(meta["image_size"])),
            lifnet_version=json.loads(meta["lifnet"]))
    except (KeyError, ValueError, TypeError, AttributeError, LifnetError) as e:
        raise CheckpointError(f"{path}: metadata missing or invalid: {e}")
    return ckpt


def restore_checkpoint(trainer: Any, ckpt: Checkpoint) -> None:
    """Put a checkpoint's weights, optimiser state and RNG state into ``trainer``.

    ``trainer`` is a :class:`lifnet.training.Trainer` built from ``ckpt.config``.
    """
    where = "checkpoint"
    try:
        trainer.model.load_state_dict(ckpt.model_state)
    except RuntimeError as e:
        first = " ".join(str(e).strip().splitlines()[0:2])
        raise CheckpointError(f"{where}: weights do not match the network of its "
                              f"configuration: {first}")
    sd = trainer.optimizer.state_dict()
    if len(ckpt.optimizer_groups) != len(sd["param_groups"]) or any(
            len(a["params"]) != len(b["params"])
            for a, b in zip(ckpt.optimizer_groups, sd["param_groups"])):
        raise CheckpointError(f"{where}: its optimiser state does not match the network")
    for group, saved in zip(sd["param_groups"], ckpt.optimizer_groups):
        group["lr"] = saved["lr"]
    sd["state"] = ckpt.optimizer_state
    try:
        trainer.optimizer.load_state_dict(sd)
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where}: its optimiser state does not fit: {e}")
    try:
        torch.set_rng_state(ckpt.torch_rng_state)
    except (RuntimeError, TypeError) as e:
        raise CheckpointError(f"{where}: bad random generator state: {e}")
    trainer.position = ckpt.position
