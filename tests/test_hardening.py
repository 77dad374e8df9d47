"""Faults a first user ran into, each held to a clear error or a sane result."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lifnet import CheckpointError, ConfigError, DataError, LIFParameters
from lifnet.checkpoint import MODEL_FILE, load_model, save_model
from lifnet.config import preset_config
from lifnet.data import DataSet
from lifnet.data.idx import encode_idx, parse_idx
from lifnet.fast import closed_form_covers
from lifnet.training import build


def test_a_data_set_without_test_images_is_refused():
    images = np.zeros((3, 28, 28), np.uint8)
    with pytest.raises(DataError, match="no test images"):
        DataSet("tiny", images, np.zeros(3, np.int64), images[:0], np.zeros(0, np.int64),
                ["a", "b"]).check()


def test_images_file_with_a_labels_magic_number_is_named():
    raw = encode_idx(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="wrong IDX magic number 0x00000804 for images"):
        parse_idx(raw[:3] + b"\x04" + raw[4:], "x", 3)


def test_sizes_have_upper_bounds():
    cfg = preset_config("default")
    for key, value in (("network.steps", "99999999999"), ("network.channels", "100000000"),
                       ("network.hidden", "1000000000")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            cfg.with_updates({key: value})


def test_window_scheme_alone_brings_its_loss():
    cfg = preset_config("default").with_updates({"coding.scheme": "window"}).validate()
    assert cfg.coding.loss == "error_energy"
    back = cfg.with_updates({"coding.scheme": "rate"}).validate()
    assert back.coding.loss == "cross_entropy"


def test_closed_form_steps_aside_when_beta_rounds_to_zero():
    assert not closed_form_covers(LIFParameters(tau_m=1e-30), True)
    assert closed_form_covers(LIFParameters(tau_m=10.0), True)


def test_an_altered_or_nan_model_file_is_refused(tmp_path):
    cfg = preset_config("default").with_updates({"network.channels": 1,
                                                 "network.steps": 5}).validate()
    model, _ = build(cfg, (28, 28))
    save_model(tmp_path / MODEL_FILE, model, cfg, [str(d) for d in range(10)], 1)
    load_model(tmp_path)                                   # whole: loads
    raw = bytearray((tmp_path / MODEL_FILE).read_bytes())
    raw[-3] ^= 0xFF                                        # one byte of the weights
    (tmp_path / MODEL_FILE).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="do not match the digest"):
        load_model(tmp_path)
    with torch.no_grad():
        model.output.weight.fill_(float("nan"))
    save_model(tmp_path / MODEL_FILE, model, cfg, [str(d) for d in range(10)], 1)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(tmp_path)


def test_writing_into_a_missing_folder_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lifnet", "simulate", "--current", "20",
                           "--steps", "20", "--plot", str(tmp_path / "nowhere" / "v.png")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "lifnet", "train", "--quiet", "--no-plots", "--epochs", "1",
            "--set", "data.train_limit=100", "--set", "data.test_limit=50",
            "--set", "network.steps=5", "--set", "network.channels=1", "--out", str(run)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    assert subprocess.run(args, capture_output=True, timeout=240, env=env).returncode == 0
    before = (run / "result.json").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "lifnet", "train", "--resume", str(run)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0 and "already finished" in proc.stdout
    assert (run / "result.json").stat().st_mtime_ns == before
    assert json.loads((run / "result.json").read_text())["epochs"] == 1
