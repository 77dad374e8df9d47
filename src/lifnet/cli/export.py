"""``lifnet export RUN_DIR --format nir OUT.nir``: the trained network for other simulators."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import load_model
from ..errors import ConfigError
from .common import say

FORMATS = ("nir",)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a run's network as a NIR graph",
                       description="Write the trained network of RUN_DIR in an exchange "
                       "format. nir: the Neuromorphic Intermediate Representation (HDF5), "
                       "LIF nodes in ms, MOhm and mV, synapses as affine maps in nA; the "
                       "input is the flattened image, held for every step of the window.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out", metavar="OUT", help="file to write, e.g. model.nir")
    p.add_argument("--format", default="nir", help="nir (the only one so far)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..export import export_nir

    if args.format not in FORMATS:
        raise ConfigError(f"--format {args.format!r}: accepted: {' or '.join(FORMATS)}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: its folder {out.parent} does not exist")
    model, cfg, _info = load_model(args.run_dir)
    export_nir(model, out, metadata={"preset": cfg.preset, "run": str(args.run_dir)})
    p = model.output_lif.params
    say(False, f"wrote {out}: NIR graph, {model.steps} steps of {p.dt:g} ms; input: the "
        f"{model.image_size[0]} x {model.image_size[1]} image flattened, held for every step")
    return 0
