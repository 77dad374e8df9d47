"""``lifnet train``: train PatchNet and write a run folder; ``--resume`` continues one.

Every epoch the run folder gets a line of ``metrics.jsonl`` (and ``metrics.csv``), the
weights (``model.safetensors``) and a checkpoint (``checkpoint.safetensors``). SIGINT or
SIGTERM during training saves a checkpoint at the next batch boundary and exits with status
130 or 143 and one line saying how to resume. A loss that turns NaN or infinite stops the
run with status 2, keeping the last good checkpoint.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    RESULT_FILE,
    atomic_write,
    load_checkpoint,
    read_metrics,
    restore_checkpoint,
    save_checkpoint,
    save_model,
    write_metrics,
)
from .. import distributed
from ..config import Config
from ..errors import CheckpointError, ConfigError, NonFiniteLossError
from ..training import EpochMetrics, Trainer, TrainingStopped, build, split_validation
from .common import add_config_flags, config_from_args, load_data, say, set_threads


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a network (mnist-5k with no arguments)",
                       description="Train PatchNet. Settings come from the preset, then "
                       "--config, then the flags, then --set.")
    add_config_flags(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/DATE-PRESET)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its checkpoint (its configuration "
                   "is the checkpoint's)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard (needs the "
                   "tensorboard package)")
    p.add_argument("--no-plots", action="store_true", help="do not draw RUN_DIR/plots")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads of each process (default 2)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train with N processes: starts torchrun --nproc-per-node N")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: synapses in bfloat16 autocast, membranes in float32")
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    return p


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """``lifnet train --nproc N ...``: the same command under torchrun with N processes."""
    import os
    import subprocess

    if args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: accepted: >= 1")
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.nproc}", "-m", "lifnet", *rest]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    return subprocess.run(cmd, env=env, check=False).returncode


def new_run_dir(out: str | None, preset: str) -> Path:
    """The run folder to create: ``--out`` (new or empty), else ``runs/DATE-PRESET``."""
    if out:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"--out {out}: exists and is not an empty folder: accepted: a "
                              "new or empty folder")
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = Path("runs") / f"{stamp}-{preset}", 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{stamp}-{preset}-{n}"
    return path


def claim_run_dir(path: Path, explicit: bool) -> Path:
    """Make the run folder so that no other run can take it too (two runs started in the
    same second, or given the same ``--out``): a new ``runs/DATE-PRESET[-N]`` is made with
    ``exist_ok=False``, the next suffix if another run made it first; an ``--out`` folder
    gets a marker file created exclusively, and a second run there is refused."""
    if explicit:
        path.mkdir(parents=True, exist_ok=True)
        try:
            (path / RUN_MARKER).open("x").close()
        except FileExistsError:
            raise ConfigError(f"--out {path}: another run has just started in this folder: "
                              "accepted: a new or empty folder")
        return path
    base, n = path, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


RUN_MARKER = ".lifnet-run"     # made exclusively in an --out folder: one run per folder


def tensorboard_writer_class():
    """``SummaryWriter``, or ConfigError saying that the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard: the tensorboard package is not installed: accepted: "
                          "install it (pip install tensorboard) or leave out --tensorboard")
    return SummaryWriter


@dataclass
class _Setup:
    cfg: Config
    dataset: Any
    run_dir: Path
    trainer: Trainer
    resume: Any  # Position or None


def _compile_kernels(model, image_size, ctx: distributed.Context, quiet: bool) -> None:
    """Run the network once, forward and backward, on two blank images before training,
    so that lifnet's CPU kernels are compiled (on a machine's first run only: they are
    cached on disk) before the progress bar starts, and say so when that took a while. It
    changes nothing in the model (the gradients are dropped; no random number is drawn)."""
    if ctx.device.type != "cpu" or not model.encoding_lif.fast:
        return
    start = time.perf_counter()
    out = model(torch.zeros(2, *image_size))
    out.spikes.float().sum().backward()
    model.zero_grad(set_to_none=True)
    took = time.perf_counter() - start
    if took > 2.0:
        say(quiet or not ctx.is_main, f"compiled lifnet's CPU kernels in {took:.0f} s "
            "(once on this machine: they are cached for later runs)")


def _fresh(args: argparse.Namespace, ctx: distributed.Context) -> _Setup:
    cfg = config_from_args(args)
    dataset = load_data(cfg.data, args.quiet or not ctx.is_main).limit(
        cfg.data.train_limit, cfg.data.test_limit)
    if len(dataset.class_names) != cfg.network.num_classes:
        # the data set decides how many output neurons there are
        say(args.quiet or not ctx.is_main, f"network.num_classes = "
            f"{len(dataset.class_names)}: the classes of {dataset.name} "
            f"({', '.join(dataset.class_names)})")
        cfg = cfg.with_updates({"network.num_classes": len(dataset.class_names)},
                               source=dataset.name).validate()
    model, coding = build(cfg, dataset.image_size)
    _compile_kernels(model, dataset.image_size, ctx, args.quiet)
    run_dir = new_run_dir(args.out if ctx.is_main else None, cfg.preset)
    trainer = Trainer(cfg, model, coding, ctx=ctx, precision=args.precision)
    return _Setup(cfg, dataset, run_dir, trainer, None)


_CONFIG_FLAGS = ("config", "preset", "dataset", "set", "epochs", "seed", "out")


def _resumed(args: argparse.Namespace, ctx: distributed.Context) -> _Setup:
    given = [f"--{name}" for name in _CONFIG_FLAGS if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"--resume with {', '.join(given)}: a resumed run keeps the "
                          "configuration of its checkpoint: accepted: --resume RUN_DIR with "
                          "--threads, --device, --nproc, --precision, --quiet, --tensorboard, "
                          "--no-plots only")
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume {args.resume}: not a run folder (no such directory)")
    ckpt = load_checkpoint(run_dir / CHECKPOINT_FILE)
    cfg = ckpt.config
    dataset = load_data(cfg.data, args.quiet or not ctx.is_main).limit(
        cfg.data.train_limit, cfg.data.test_limit)
    if tuple(dataset.image_size) != tuple(ckpt.image_size):
        raise CheckpointError(f"{run_dir / CHECKPOINT_FILE}: images of {ckpt.image_size} px "
                              f"but {dataset.name} has {dataset.image_size}")
    model, coding = build(cfg, dataset.image_size)
    _compile_kernels(model, dataset.image_size, ctx, args.quiet)
    trainer = Trainer(cfg, model, coding, ctx=ctx, precision=args.precision)
    restore_checkpoint(trainer, ckpt)
    return _Setup(cfg, dataset, run_dir, trainer, ckpt.position)


class _StopFlag:
    """SIGINT and SIGTERM handlers that only take note; training stops at a batch boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: quit now, keep the last checkpoint
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __call__(self) -> bool:
        return self.signum is not None


def run(args: argparse.Namespace) -> int:
    import os

    set_threads(args.threads)
    if args.nproc is not None and "WORLD_SIZE" not in os.environ:
        return launch(args, sys.argv[1:])
    ctx = distributed.setup(args.device)
    try:
        return _run(args, ctx)
    finally:
        distributed.teardown()


def _run(args: argparse.Namespace, ctx: distributed.Context) -> int:
    from ..data import to_tensors

    writer_class = tensorboard_writer_class() if args.tensorboard and ctx.is_main else None
    setup = _resumed(args, ctx) if args.resume else _fresh(args, ctx)
    cfg, dataset, run_dir, trainer = setup.cfg, setup.dataset, setup.run_dir, setup.trainer
    if setup.resume is not None and setup.resume.finished:
        say(not ctx.is_main, f"{run_dir}: this run has already finished (epoch "
            f"{setup.resume.epoch - 1}); nothing to resume: see {run_dir / RESULT_FILE}")
        return 0
    model = trainer.model
    # only the first process writes files and talks
    args.quiet = args.quiet or not ctx.is_main

    images, labels = to_tensors(dataset.train_images, dataset.train_labels)
    test_x, test_y = to_tensors(dataset.test_images, dataset.test_labels)
    tr, va = split_validation(len(labels), cfg.training.validation_fraction, cfg.training.seed)
    class_names = list(dataset.class_names)
    ckpt_path = run_dir / CHECKPOINT_FILE

    # everything is checked: from here on the run folder exists
    if not ctx.is_main:
        records = []
    elif setup.resume is None:
        run_dir = claim_run_dir(run_dir, explicit=bool(args.out))
        ckpt_path = run_dir / CHECKPOINT_FILE
        atomic_write(run_dir / CONFIG_FILE, cfg.to_toml())
        write_metrics(run_dir, [])
        save_checkpoint(ckpt_path, trainer, class_names)
        records = []
    else:
        # epochs after the checkpoint's were never checkpointed: they will be run again
        records = [r for r in read_metrics(run_dir) if r["epoch"] < setup.resume.epoch]
        write_metrics(run_dir, records)
        trainer.history = [EpochMetrics(**r) for r in records]
    n_weights = sum(p.numel() for p in model.parameters())
    where = (f"resuming at epoch {setup.resume.epoch}, batch {setup.resume.batch} in "
             if setup.resume is not None else "")
    say(args.quiet, f"lifnet {__version__}: preset '{cfg.preset}' on {dataset.name} "
        f"({len(tr)} train, {len(va)} validation, {len(test_y)} test), {n_weights:,} weights, "
        f"{cfg.network.steps} steps of {cfg.network.dt} ms -> {where}{run_dir}")

    writer = writer_class(log_dir=str(run_dir / "tensorboard")) if writer_class else None
    per_epoch = -(-len(tr) // cfg.training.batch_size)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        done = 0 if setup.resume is None else (
            (setup.resume.epoch - 1) * per_epoch + setup.resume.batch)
        total = cfg.training.max_epochs * per_epoch
        bar = tqdm(total=total, initial=min(done, total), unit="batch",
                   dynamic_ncols=True, file=sys.stderr, leave=False)

    def on_batch(i: int, n: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def on_epoch(m: EpochMetrics) -> None:
        if not ctx.is_main:
            return
        records.append(m.to_dict())
        write_metrics(run_dir, records)
        save_model(run_dir / MODEL_FILE, model, cfg, class_names, m.epoch)
        save_checkpoint(ckpt_path, trainer, class_names)
        if writer is not None:
            for key, value in m.to_dict().items():
                if key != "epoch" and value is not None:
                    writer.add_scalar(key, value, m.epoch)
            writer.flush()
        if bar is not None:
            val = f"{m.val_accuracy:.4f}" if m.val_accuracy is not None else "-"
            bar.write(f"epoch {m.epoch:3d}/{cfg.training.max_epochs}  loss {m.loss:.4f}  "
                      f"error energy {m.error_energy:.3f}  train acc {m.train_accuracy:.4f}  "
                      f"val acc {val}  {m.samples_per_second:,.0f} samples/s  "
                      f"{m.seconds:.1f} s")

    start = time.perf_counter()
    try:
        with _StopFlag() as stop:
            history = trainer.fit(images[tr], labels[tr], images[va], labels[va],
                                  on_batch=on_batch, on_epoch=on_epoch,
                                  resume=setup.resume, should_stop=stop)
    except TrainingStopped as e:
        if ctx.is_main:
            save_checkpoint(ckpt_path, trainer, class_names)
        if bar is not None:
            bar.close()
        # under DDP a process may stop because another one was signalled
        signum = stop.signum if stop.signum is not None else int(signal.SIGTERM)
        pos = e.position
        if ctx.is_main:
            print(f"lifnet: stopped by {signal.Signals(signum).name} at epoch {pos.epoch}, "
                  f"batch {pos.batch} of {per_epoch}; checkpoint saved; resume with: lifnet "
                  f"train --resume {run_dir}", file=sys.stderr, flush=True)
        return 128 + signum
    except NonFiniteLossError as e:
        if bar is not None:
            bar.close()
        raise NonFiniteLossError(f"{e}; the last good checkpoint is kept in {ckpt_path}")
    finally:
        if writer is not None:
            writer.close()
    if ctx.is_main:
        save_checkpoint(ckpt_path, trainer, class_names)
    # a resumed run counts the epochs it did not run again at their recorded time
    train_seconds = time.perf_counter() - start
    if setup.resume is not None:
        train_seconds += sum(m.seconds for m in history if m.epoch < setup.resume.epoch)
    if bar is not None:
        bar.close()
    if not history:
        raise CheckpointError(f"{run_dir}: no epoch recorded in metrics.jsonl")

    ev = trainer.evaluate(test_x, test_y)
    decoding = "nearest target" if cfg.coding.scheme == "window" else "most spikes"
    result = {
        "test_accuracy": ev.accuracy,
        "mean_error_energy": ev.mean_error_energy,
        "train_mean_error_energy": history[-1].error_energy,
        "val_accuracy": history[-1].val_accuracy,
        "epochs": len(history),
        "train_seconds": train_seconds,
        "train_samples_per_second": len(tr) * len(history) / train_seconds,
        "dataset": dataset.name,
        "preset": cfg.preset,
        "decoding": decoding,
        "test_samples": len(test_y),
        "class_names": class_names,
        "confusion": ev.confusion,
        "lifnet": __version__,
    }
    if not ctx.is_main:
        return 0
    result["processes"] = ctx.world_size
    result["device"] = str(ctx.device)
    result["precision"] = args.precision
    atomic_write(run_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    if not args.no_plots:
        from ..plots import write_plots

        write_plots(run_dir, model, trainer.coding, records, ev.confusion, class_names,
                    test_x, test_y)
    print(f"test accuracy {ev.accuracy:.4f} on {len(test_y)} {dataset.name} test images "
          f"({decoding}), mean error energy {ev.mean_error_energy:.3f}, {len(history)} "
          f"epoch{'' if len(history) == 1 else 's'} in {train_seconds:.1f} s; run folder "
          f"{run_dir}", flush=True)
    return 0
