"""``lifnet evaluate RUN_DIR``: accuracy and confusion matrix of a trained run."""

from __future__ import annotations

import argparse
import json


from ..checkpoint import load_model
from ..distributed import resolve_device
from ..coding import Coding
from ..training import evaluate
from .common import load_data, say, set_threads


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a trained run",
                       description="Evaluate a run folder's network on its data set's "
                       "test split.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    return p


def confusion_table(confusion: list[list[int]], names: list[str]) -> str:
    """Rows: true class; columns: predicted class."""
    width = max(5, max(len(str(v)) for row in confusion for v in row) + 1)
    lines = [" " * 12 + "".join(f"{n[:width - 1]:>{width}}" for n in names)]
    for name, row in zip(names, confusion):
        lines.append(f"{name[:11]:>11} " + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..data import to_tensors

    set_threads(args.threads)
    model, cfg, info = load_model(args.run_dir)
    device = resolve_device(args.device)
    model.to(device)
    dataset = load_data(cfg.data, args.json).limit(None, cfg.data.test_limit)
    x, y = to_tensors(dataset.test_images, dataset.test_labels)
    coding = Coding(cfg.coding, cfg.network.steps, cfg.network.num_classes)
    ev = evaluate(model, coding, x, y, device=device)
    names = info.get("class_names", dataset.class_names)
    if args.json:
        print(json.dumps({"accuracy": ev.accuracy, "mean_error_energy": ev.mean_error_energy,
                          "samples": len(y), "dataset": dataset.name, "class_names": names,
                          "confusion": ev.confusion}))
        return 0
    say(False, f"accuracy {ev.accuracy:.4f} on {len(y)} {dataset.name} test images, "
        f"mean error energy {ev.mean_error_energy:.3f}")
    say(False, "confusion matrix (rows: true class, columns: predicted)")
    say(False, confusion_table(ev.confusion, names))
    return 0
