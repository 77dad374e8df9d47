"""Plots: written at the end of `lifnet train`, redrawn by `lifnet plot RUN_DIR`."""

import os
import subprocess
import sys

import torch

from lifnet.coding import Coding
from lifnet.config import preset_config
from lifnet.plots import PLOT_FILES, pick_digits, write_plots
from lifnet.training import build

PNG = b"\x89PNG\r\n\x1a\n"


def _lifnet(*args):
    return subprocess.run([sys.executable, "-m", "lifnet", *args], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})


def test_train_writes_plots_metrics_and_checkpoint_and_plot_redraws_them(tmp_path):
    run = tmp_path / "run"
    proc = _lifnet("train", "--epochs", "2", "--set", "data.train_limit=200",
                   "--set", "data.test_limit=60", "--set", "network.steps=8",
                   "--set", "network.channels=2", "--set", "training.batch_size=50",
                   "--threads", "1", "--quiet", "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    for name in ("metrics.jsonl", "metrics.csv", "checkpoint.safetensors", "model.safetensors",
                 "result.json", "config.toml"):
        assert (run / name).stat().st_size > 0, name
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,loss,error_energy,train_accuracy")
    assert [line.split(",")[0] for line in csv_lines[1:]] == ["1", "2"]
    sizes = {}
    for name in PLOT_FILES:
        data = (run / "plots" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
        sizes[name] = len(data)
        (run / "plots" / name).unlink()

    proc = _lifnet("plot", str(run), "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    for name in PLOT_FILES:
        assert (run / "plots" / name).read_bytes().startswith(PNG), name
        assert str(run / "plots" / name) in proc.stdout

    bad = _lifnet("plot", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "not a run folder" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_window_coding_plots_with_targets_and_one_channel(tmp_path):
    cfg = preset_config("notebook").with_updates({
        "network.steps": 20, "network.channels": 1, "coding.target_spikes": 1}).validate()
    model, coding = build(cfg, (28, 28))
    assert isinstance(coding, Coding)
    images = torch.rand(40, 28, 28)
    labels = torch.arange(40) % 10
    records = [{"epoch": 1, "loss": 2.0, "error_energy": 2.0, "train_accuracy": 0.1,
                "val_accuracy": None, "val_error_energy": None}]
    confusion = torch.eye(10, dtype=torch.int64).mul(4).tolist()
    paths = write_plots(tmp_path, model, coding, records, confusion, [str(d) for d in range(10)],
                        images, labels, digits=2)
    assert [p.name for p in paths] == list(PLOT_FILES)
    for p in paths:
        assert p.read_bytes().startswith(PNG)
    assert not list((tmp_path / "plots").glob("*.tmp"))


def test_pick_digits_takes_different_classes():
    labels = torch.tensor([3, 3, 1, 3, 1, 7, 2])
    assert pick_digits(labels, 3) == [0, 2, 5]
    assert pick_digits(labels, 10) == [0, 2, 5, 6]


def test_tensorboard_flag_writes_events_or_says_the_package_is_missing(tmp_path):
    import importlib.util

    run = tmp_path / "run"
    proc = _lifnet("train", "--tensorboard", "--epochs", "1", "--set", "data.train_limit=60",
                   "--set", "data.test_limit=20", "--set", "network.steps=4",
                   "--set", "network.channels=1", "--threads", "1", "--quiet", "--no-plots",
                   "--out", str(run))
    if importlib.util.find_spec("tensorboard") is None:
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "the tensorboard package is not installed" in lines[0]
        assert not run.exists()
    else:
        assert proc.returncode == 0, proc.stderr
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
