"""``lifnet train``: train PatchNet and write a run folder."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from .. import __version__
from ..checkpoint import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RESULT_FILE,
    append_line,
    atomic_write,
    save_model,
)
from ..errors import ConfigError
from ..training import EpochMetrics, Trainer, build, split_validation
from .common import add_config_flags, config_from_args, load_data, say


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a network (mnist-5k with no arguments)",
                       description="Train PatchNet. Settings come from the preset, then "
                       "--config, then the flags, then --set.")
    add_config_flags(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/DATE-PRESET)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    return p


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


def run(args: argparse.Namespace) -> int:
    from ..data import to_tensors

    cfg = config_from_args(args)
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: accepted: >= 1")
    torch.set_num_threads(args.threads)
    dataset = load_data(cfg.data, args.quiet).limit(
        cfg.data.train_limit, cfg.data.test_limit)
    if len(dataset.class_names) != cfg.network.num_classes:
        # the data set decides how many output neurons there are
        say(args.quiet, f"network.num_classes = {len(dataset.class_names)}: the classes of "
            f"{dataset.name} ({', '.join(dataset.class_names)})")
        cfg = cfg.with_updates({"network.num_classes": len(dataset.class_names)},
                               source=dataset.name).validate()
    model, coding = build(cfg, dataset.image_size)
    run_dir = new_run_dir(args.out, cfg.preset)

    images, labels = to_tensors(dataset.train_images, dataset.train_labels)
    test_x, test_y = to_tensors(dataset.test_images, dataset.test_labels)
    tr, va = split_validation(len(labels), cfg.training.validation_fraction, cfg.training.seed)

    # everything is checked: from here on the run folder exists
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG_FILE, cfg.to_toml())
    n_weights = sum(p.numel() for p in model.parameters())
    say(args.quiet, f"lifnet {__version__}: preset '{cfg.preset}' on {dataset.name} "
        f"({len(tr)} train, {len(va)} validation, {len(test_y)} test), {n_weights:,} weights, "
        f"{cfg.network.steps} steps of {cfg.network.dt} ms -> {run_dir}")

    trainer = Trainer(cfg, model, coding)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        per_epoch = -(-len(tr) // cfg.training.batch_size)
        bar = tqdm(total=cfg.training.max_epochs * per_epoch, unit="batch",
                   dynamic_ncols=True, file=sys.stderr, leave=False)

    def on_batch(i: int, n: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def on_epoch(m: EpochMetrics) -> None:
        append_line(run_dir / METRICS_FILE, m.to_dict())
        save_model(run_dir / MODEL_FILE, model, cfg, dataset.class_names, m.epoch)
        if bar is not None:
            val = f"{m.val_accuracy:.4f}" if m.val_accuracy is not None else "-"
            bar.write(f"epoch {m.epoch:3d}/{cfg.training.max_epochs}  loss {m.loss:.4f}  "
                      f"error energy {m.error_energy:.3f}  train acc {m.train_accuracy:.4f}  "
                      f"val acc {val}  {m.samples_per_second:,.0f} samples/s  "
                      f"{m.seconds:.1f} s")

    start = time.perf_counter()
    history = trainer.fit(images[tr], labels[tr], images[va], labels[va],
                          on_batch=on_batch, on_epoch=on_epoch)
    train_seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()

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
        "class_names": dataset.class_names,
        "confusion": ev.confusion,
        "lifnet": __version__,
    }
    atomic_write(run_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    print(f"test accuracy {ev.accuracy:.4f} on {len(test_y)} {dataset.name} test images "
          f"({decoding}), mean error energy {ev.mean_error_energy:.3f}, {len(history)} epochs "
          f"in {train_seconds:.1f} s; run folder {run_dir}", flush=True)
    return 0
