"""``lifnet config``: print the full configuration as TOML, each key with unit and meaning."""

from __future__ import annotations

import argparse
import sys

from .common import add_config_flags, config_from_args


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("config", help="print the full configuration as commented TOML",
                       description="Print the configuration that `lifnet train` would use "
                       "(the preset, then --config, then the flags, then --set) as TOML, "
                       "each key with its unit and meaning in a comment. The output reads "
                       "back with --config.")
    add_config_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    sys.stdout.write(cfg.to_toml(comments=True))
    return 0
