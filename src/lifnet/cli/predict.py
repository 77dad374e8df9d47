"""``lifnet predict RUN_DIR IMAGE...``: the class of each image by a trained run.

Each image goes through :func:`lifnet.data.images.prepare`, the same preprocessing as a
``folder:`` training set (grey, light background inverted, resized to the network's input
size, scaled), then through the network. For each image it prints the class and, per
class, the output spike count (rate coding: most spikes wins) or the distance to the class's
target train (window coding, error energy: nearest wins).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write, load_model
from ..distributed import resolve_device
from ..coding import Coding, target_distances
from ..errors import ConfigError
from .common import say, set_threads


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="classify image files with a trained run",
                       description="Classify PNG or JPEG files (any size and mode) with the "
                       "network of a run folder. Images are made grey, inverted if their "
                       "background is light, resized to the network's input and scaled, as "
                       "for a folder: data set.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the output spike raster of the first image to this PNG file")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    return p


def plot_raster(path: str | Path, spikes: np.ndarray, names: list[str], dt: float,
                title: str, target: np.ndarray | None = None) -> None:
    """Output raster ``(T, K)`` of one image to a PNG file, with the target train if given."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    steps, k = spikes.shape
    fig = Figure(figsize=(7, 0.35 * k + 1.6), dpi=100)
    ax = fig.add_subplot()
    t_ms = np.arange(steps) * dt
    for c in range(k):
        times = t_ms[spikes[:, c] > 0]
        ax.vlines(times, c - 0.4, c + 0.4, color="black", linewidth=1.5)
        if target is not None:
            want = t_ms[target[:, c] > 0]
            ax.plot(want, np.full(len(want), c), "o", mfc="none", mec="tab:red", ms=7)
    if target is not None:
        ax.plot([], [], "o", mfc="none", mec="tab:red", label="target of the predicted class")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_yticks(range(k), names)
    ax.set_ylim(-0.7, k - 0.3)
    ax.set_xlim(-dt, steps * dt)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("output neuron (class)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    from ..data.images import load_image

    if args.plot and not args.plot.lower().endswith(".png"):
        raise ConfigError(f"--plot {args.plot}: accepted: a file name ending in .png")
    set_threads(args.threads)
    model, cfg, info = load_model(args.run_dir)
    device = resolve_device(args.device)
    model.to(device)
    names = list(info.get("class_names") or range(model.num_classes))
    names = [str(n) for n in names]
    size = tuple(model.image_size)
    # every image is read before any is classified: one bad file stops the command
    pixels = np.stack([load_image(path, size) for path in args.images])
    x = torch.from_numpy(pixels).float().div_(255.0).to(device)
    coding = Coding(cfg.coding, cfg.network.steps, cfg.network.num_classes)
    with torch.no_grad():
        spikes = model(x).spikes.cpu()                              # (T, N, K)
        scores = coding.scores(spikes)
        counts = spikes.sum(0)
        distances = (target_distances(spikes, coding.targets)
                     if cfg.coding.scheme == "window" else None)
    predicted = scores.argmax(1).tolist()
    window = cfg.coding.scheme == "window"
    results = []
    for i, path in enumerate(args.images):
        r = {"image": str(path), "class": names[predicted[i]], "class_index": predicted[i],
             "spike_counts": {n: int(c) for n, c in zip(names, counts[i].tolist())}}
        if window:
            r["distances"] = {n: round(float(d), 4) for n, d in zip(names, distances[i])}
        results.append(r)
    if args.plot:
        first = spikes[:, 0, :].numpy()
        target = coding.targets[predicted[0]].numpy() if window else None
        plot_raster(args.plot, first, names, cfg.network.dt,
                    f"{Path(args.images[0]).name}: class {names[predicted[0]]} "
                    f"({'nearest target' if window else 'most spikes'})", target)
    if args.json:
        print(json.dumps({"run_dir": str(args.run_dir), "decoding": "nearest target"
                          if window else "most spikes", "class_names": names,
                          "steps": cfg.network.steps, "dt_ms": cfg.network.dt,
                          "predictions": results, "plot": args.plot}))
        return 0
    what = "distance to each class's target" if window else "output spikes per class"
    say(False, f"{len(results)} image(s), {what} over {cfg.network.steps} steps of "
        f"{cfg.network.dt} ms:")
    for r in results:
        per = r["distances"] if window else r["spike_counts"]
        detail = "  ".join(f"{n}: {v:g}" for n, v in per.items())
        say(False, f"{r['image']}: {r['class']}    ({detail})")
    if args.plot:
        say(False, f"output raster of {args.images[0]} -> {args.plot}")
    return 0
