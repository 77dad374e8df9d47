"""Pictures of a run: training curves, confusion matrix, test digits, patch weights.

Everything is drawn with matplotlib's ``Figure`` and the Agg canvas (no display, no
``pyplot`` state), and written as PNG through :func:`~lifnet.checkpoint.atomic_write`.
:func:`write_plots` writes the four figures into ``RUN_DIR/plots/``:

- ``training_curves.png``: loss, error energy and accuracies per epoch;
- ``confusion_matrix.png``: test counts, rows the true class, columns the prediction;
- ``test_digits.png``: for a few test digits, the image, the encoding neurons' spikes, the
  output spikes (with the target trains under window coding) and the output membrane
  potentials in mV with the threshold;
- ``patch_weights.png``: the learned patch weights, one tile per patch, one panel per
  channel, laid out like the patches on the image.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write

PLOTS_DIR = "plots"
PLOT_FILES = ("training_curves.png", "confusion_matrix.png", "test_digits.png",
              "patch_weights.png")


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())
    return path


def plot_training_curves(records: list[dict]):
    """Loss, error energy and accuracy (train and validation) against the epoch."""
    fig = _figure(13, 4)
    axes = fig.subplots(1, 3)
    epochs = [r["epoch"] for r in records]

    def series(key):
        return [np.nan if r.get(key) is None else r[key] for r in records]

    axes[0].plot(epochs, series("loss"), "o-", label="training")
    axes[0].set_title("Training loss")
    axes[0].set_ylabel("loss (per sample)")
    axes[1].plot(epochs, series("error_energy"), "o-", label="training")
    if any(r.get("val_error_energy") is not None for r in records):
        axes[1].plot(epochs, series("val_error_energy"), "s--", label="validation")
    axes[1].set_title("Error energy  ½ Σ (desired − actual spikes)²")
    axes[1].set_ylabel("error energy (per sample)")
    axes[2].plot(epochs, [100 * v for v in series("train_accuracy")], "o-", label="training")
    if any(r.get("val_accuracy") is not None for r in records):
        axes[2].plot(epochs, [100 * v for v in series("val_accuracy")], "s--",
                     label="validation")
    axes[2].set_title("Accuracy")
    axes[2].set_ylabel("accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        if epochs:
            ax.set_xticks(range(min(epochs), max(epochs) + 1,
                                max(1, math.ceil(len(epochs) / 10))))
    fig.suptitle(f"Training curves ({len(records)} epochs)")
    return fig


def plot_confusion(confusion: list[list[int]], class_names: list[str]):
    """Counts of test samples by true class (rows) and predicted class (columns)."""
    c = np.asarray(confusion)
    k = len(class_names)
    fig = _figure(1.8 + 0.55 * k, 1.2 + 0.5 * k)
    ax = fig.subplots()
    im = ax.imshow(c, cmap="Blues")
    total, right = c.sum(), np.trace(c)
    for i in range(k):
        for j in range(k):
            if c[i, j]:
                ax.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if c[i, j] > c.max() / 2 else "black")
    ax.set_xticks(range(k), [n[:10] for n in class_names], rotation=45 if k > 10 or max(
        map(len, class_names)) > 2 else 0, ha="right" if max(map(len, class_names)) > 2
        else "center")
    ax.set_yticks(range(k), [n[:10] for n in class_names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = right / max(1, total)
    ax.set_title(f"Confusion matrix: {total} test samples, accuracy {100 * acc:.1f}%")
    fig.colorbar(im, ax=ax, label="test samples", shrink=0.8)
    return fig


@torch.no_grad()
def plot_test_digits(model, coding, images: torch.Tensor, labels: torch.Tensor,
                     class_names: list[str]):
    """For each digit: image, encoding raster, output raster (and targets), output potentials.

    ``images`` ``(B, H, W)`` in [0, 1], ``labels`` ``(B,)``.
    """
    model.eval()
    out = model(images, record_v=True)
    p = model.output_lif.params
    dt, steps = p.dt, model.steps
    pred = coding.decode(out.spikes)
    window = coding.cfg.scheme == "window"
    k = model.num_classes
    n = len(labels)
    fig = _figure(19, 3.6 * n)
    grid = fig.subplots(n, 4, width_ratios=[0.8, 1.6, 1.6, 1.9], squeeze=False)
    t_end = steps * dt
    for row in range(n):
        y, yhat = int(labels[row]), int(pred[row])
        ax = grid[row, 0]
        ax.imshow(images[row].cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"Test digit {row + 1}: class {class_names[y]}\npredicted "
                     f"{class_names[yhat]} ({'right' if y == yhat else 'wrong'})",
                     color="black" if y == yhat else "red")
        ax.set_xticks([])
        ax.set_yticks([])

        ax = grid[row, 1]
        enc = out.encoding[:, row].cpu().numpy()                     # (T, N)
        ax.imshow(enc.T, aspect="auto", cmap="gray_r", interpolation="nearest",
                  extent=(0, t_end, enc.shape[1] - 0.5, -0.5), vmin=0, vmax=1)
        rate = enc.mean() * 1000.0 / dt
        ax.set_title(f"Encoding spikes ({enc.shape[1]} neurons, {int(enc.sum())} spikes, "
                     f"mean {rate:.0f} Hz)")
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("encoding neuron (patch × channel)")

        ax = grid[row, 2]
        spikes = out.spikes[:, row].cpu().numpy()                    # (T, K)
        if window:
            for c in range(k):
                first = c * (steps // k) * dt
                ax.axvspan(first, first + (steps // k) * dt, ymin=0, ymax=1,
                           color="0.93" if c % 2 else "white", zorder=0)
            slot = (steps // k) * dt
            top = ax.secondary_xaxis("top")
            top.set_xticks([(c + 0.5) * slot for c in range(k)],
                           [class_names[c][:6] for c in range(k)], fontsize=7)
            top.set_xlabel("time slot of class", fontsize=8)
            target = coding.targets[y].cpu().numpy()                 # (T, K)
            tt, tc = np.nonzero(target)
            ax.scatter(tt * dt, tc, s=160, facecolors="none", edgecolors="tab:red",
                       linewidths=1.5, label=f"target train of class {class_names[y]}",
                       zorder=2)
        st, sc = np.nonzero(spikes)
        ax.scatter(st * dt, sc, marker="|", s=140, color="black", linewidths=2,
                   label="output spike", zorder=3)
        ax.set_yticks(range(k), [f"{class_names[c][:8]} ({int(spikes[:, c].sum())})"
                                 for c in range(k)])
        ax.set_ylim(-0.6, k - 0.4)
        ax.set_xlim(-0.5 * dt, t_end)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("output neuron (spike count)")
        ax.set_title("Output spikes, target trains as red circles" if window else
                     "Output spikes (rate coding: most spikes wins)")
        ax.legend(loc="upper right", fontsize=7, framealpha=0.9)

        ax = grid[row, 3]
        v = out.v_out[:, row].cpu().numpy()                          # (T, K)
        times = np.arange(steps + 1) * dt
        cmap = __import__("matplotlib").colormaps["tab10"]
        for c in range(k):
            trace = np.concatenate([[p.v_init], v[:, c]])
            ax.plot(times, trace, color=cmap(c % 10), lw=2.4 if c == y else 1.0,
                    label=class_names[c][:8] + (" (true)" if c == y else ""))
            s = np.nonzero(spikes[:, c])[0]
            ax.plot((s + 1) * dt, np.full(len(s), p.v_th), "v", color=cmap(c % 10), ms=5)
        ax.axhline(p.v_th, color="black", ls="--", lw=1)
        ax.text(t_end, p.v_th, " threshold", va="bottom", ha="right", fontsize=8)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("membrane potential (mV)")
        ax.set_title("Output membrane potentials (after reset; ▼ = spike)")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
                  title="output neuron", title_fontsize=7)
    fig.suptitle(f"What the network does with {n} test digits ({steps} steps of {dt:g} ms)")
    return fig


def plot_patch_weights(model, max_channels: int = 8):
    """The learned patch weights: one ``k x k`` tile per patch, placed like the patches."""
    import matplotlib

    enc = model.encoding
    w = enc.weight.detach().cpu().numpy()                            # (P, C, k*k)
    gh, gw = enc.grid
    k = enc.patch_size
    channels = min(enc.channels, max_channels)
    cols = min(4, channels)
    rows = math.ceil(channels / cols)
    fig = _figure(3.6 * cols + 1.2, 3.6 * rows + 0.8)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    lim = float(np.abs(w[:, :channels]).max()) or 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    im = None
    for c in range(channels):
        mosaic = np.full((gh * (k + 1) - 1, gw * (k + 1) - 1), np.nan)
        for i in range(gh):
            for j in range(gw):
                tile = w[i * gw + j, c].reshape(k, k)
                mosaic[i * (k + 1):i * (k + 1) + k, j * (k + 1):j * (k + 1) + k] = tile
        ax = axes[c]
        im = ax.imshow(mosaic, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"channel {c + 1}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{gw} patch columns")
        ax.set_ylabel(f"{gh} patch rows")
    for ax in axes[channels:]:
        ax.set_visible(False)
    more = f" (first {channels} of {enc.channels} channels)" if enc.channels > channels else ""
    fig.suptitle(f"Learned patch weights: {gh} × {gw} patches of {k} × {k} px, stride "
                 f"{enc.stride} px{more}\neach {k} × {k} tile: one encoding neuron's weights "
                 "over its patch (red: a bright pixel raises its current, blue: lowers it)")
    fig.colorbar(im, ax=list(axes[:channels]), shrink=0.8,
                 label=f"weight (× gain {enc.gain:g} nA per unit pixel)")
    return fig


def pick_digits(labels: torch.Tensor, count: int = 3) -> list[int]:
    """Indices of the first test samples of ``count`` different classes."""
    chosen, seen = [], set()
    for i, y in enumerate(labels.tolist()):
        if y not in seen:
            chosen.append(i)
            seen.add(y)
        if len(chosen) == count:
            break
    return chosen


def write_plots(run_dir: str | Path, model, coding, records: list[dict],
                confusion: list[list[int]], class_names: list[str],
                test_images: torch.Tensor, test_labels: torch.Tensor,
                digits: int = 3) -> list[Path]:
    """Draw the four figures into ``run_dir/plots/``; returns their paths."""
    folder = Path(run_dir) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    idx = pick_digits(test_labels, digits)
    figures = [plot_training_curves(records), plot_confusion(confusion, class_names),
               plot_test_digits(model, coding, test_images[idx], test_labels[idx],
                                class_names),
               plot_patch_weights(model)]
    return [_save(fig, folder / name) for fig, name in zip(figures, PLOT_FILES)]
