"""``lifnet plot RUN_DIR``: draw (again) the figures of a run into RUN_DIR/plots/."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from ..checkpoint import RESULT_FILE, load_model, read_metrics
from ..coding import Coding
from ..errors import CheckpointError
from ..training import evaluate
from .common import say, set_threads


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("plot", help="draw a run's figures into RUN_DIR/plots",
                       description="Draw the training curves, the confusion matrix, a few "
                       "test digits through the network, and the learned patch weights, as "
                       "PNG files in RUN_DIR/plots/.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--digits", type=int, default=3, help="test digits to show (default 3)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset, to_tensors
    from ..plots import write_plots

    if args.digits < 1:
        raise CheckpointError(f"--digits {args.digits}: accepted: >= 1")
    set_threads(args.threads)
    run_dir = Path(args.run_dir)
    model, cfg, info = load_model(run_dir)
    dataset = load_dataset(cfg.data.dataset, cfg.data.data_dir).limit(None, cfg.data.test_limit)
    x, y = to_tensors(dataset.test_images, dataset.test_labels)
    coding = Coding(cfg.coding, cfg.network.steps, cfg.network.num_classes)
    names = info.get("class_names", dataset.class_names)
    result_path = run_dir / RESULT_FILE
    confusion = None
    if result_path.exists():
        try:
            confusion = json.loads(result_path.read_text(encoding="utf-8"))["confusion"]
        except (json.JSONDecodeError, KeyError):
            confusion = None
    if confusion is None:
        confusion = evaluate(model, coding, x, y).confusion
    paths = write_plots(run_dir, model, coding, read_metrics(run_dir), confusion, names, x, y,
                        digits=args.digits)
    for path in paths:
        say(False, path)
    return 0
