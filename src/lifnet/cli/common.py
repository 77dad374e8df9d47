"""What the commands share: the parser class, configuration from flags, output helpers."""

from __future__ import annotations

import argparse

import torch

from ..config import Config, parse_set, preset_config, read_toml
from ..errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with status 2."""

    def error(self, message: str):
        self.exit(2, f"lifnet: error: {message} (see {self.prog} --help)\n")


def set_threads(threads: int) -> None:
    """``--threads``: CPU threads of this process (>= 1)."""
    if threads < 1:
        raise ConfigError(f"--threads {threads}: accepted: >= 1")
    torch.set_num_threads(threads)


def say(quiet: bool, *args) -> None:
    """Print unless ``--quiet``."""
    if not quiet:
        print(*args, flush=True)


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--preset``, ``--set`` and the plain flags that change settings."""
    from ..config import PRESETS

    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="starting configuration (default: default)")
    p.add_argument("--dataset", help="data set: mnist-5k (default), mnist, fashion-mnist or "
                   "folder:PATH (one subfolder of images per class)")
    p.add_argument("--data-dir", metavar="DIR", help="data.data_dir: the folder (or .npz "
                   "file) holding the mnist or fashion-mnist files")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one setting, e.g. --set neuron.v_th=-52 (repeatable)")
    p.add_argument("--epochs", type=int, help="training.max_epochs")
    p.add_argument("--seed", type=int, help="training.seed")


class DownloadBars:
    """A download progress callback that draws one bar per file on standard error;
    :meth:`close` clears any bar left when a download stopped halfway."""

    def __init__(self) -> None:
        self.bars: dict = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        import sys

        from tqdm import tqdm

        bar = self.bars.get(name)
        if bar is None or done == 0:
            if bar is not None:
                bar.close()
            bar = self.bars[name] = tqdm(total=total, unit="B", unit_scale=True, desc=name,
                                         file=sys.stderr, dynamic_ncols=True, leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def load_data(data, quiet: bool = False):
    """The configured data set, with download bars unless ``quiet``."""
    from ..data import load_configured

    bars = None if quiet else DownloadBars()
    try:
        return load_configured(data, bars)
    finally:
        if bars is not None:
            bars.close()


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset, then the ``--config`` file, then the plain flags, then ``--set``."""
    file_data: dict = read_toml(args.config) if args.config else {}
    in_file = file_data.pop("preset", None)
    if args.preset and in_file and args.preset != in_file:
        # the file's values would go over the flag's preset and the run be named after it
        raise ConfigError(f"--preset {args.preset} with --config {args.config}, whose preset "
                          f"is {in_file!r}: accepted: one of them, or the same preset in both")
    preset = args.preset or in_file or "default"
    cfg = preset_config(preset)
    if file_data:
        cfg = Config.from_dict(file_data, source=str(args.config), base=cfg)
    flags = {}
    if args.dataset is not None:
        flags["data.dataset"] = args.dataset
    if getattr(args, "data_dir", None) is not None:
        flags["data.data_dir"] = args.data_dir
    if args.epochs is not None:
        flags["training.max_epochs"] = args.epochs
    if args.seed is not None:
        flags["training.seed"] = args.seed
    cfg = cfg.with_updates(flags, source="command line")
    cfg = cfg.with_updates(parse_set(args.set or []))
    return cfg.validate()
