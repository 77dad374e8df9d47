"""Checkpoints: a run stopped by SIGTERM and resumed ends bit-identical to one never stopped;
damaged checkpoints are refused; a NaN loss stops training and keeps the last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lifnet.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    read_safetensors,
    restore_checkpoint,
    save_checkpoint,
)
from lifnet.cli import main
from lifnet.coding import Coding
from lifnet.config import preset_config
from lifnet.data import load_dataset, to_tensors
from lifnet.errors import CheckpointError, NonFiniteLossError
from lifnet.training import Trainer, TrainingStopped, build

# 540 training samples in batches of 4: 135 batches per epoch, long enough to be hit
SMALL = ["--set", "data.train_limit=600", "--set", "data.test_limit=100",
         "--set", "network.steps=8", "--set", "network.channels=1",
         "--set", "training.batch_size=4", "--epochs", "3", "--seed", "3",
         "--threads", "1", "--quiet", "--no-plots"]


def _lifnet(*args):
    return [sys.executable, "-m", "lifnet", *args]


def _env():
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _weights(run: Path) -> bytes:
    tensors, _ = read_safetensors(run / "model.safetensors")
    return b"".join(tensors[k].numpy().tobytes() for k in sorted(tensors))


def test_sigterm_in_second_epoch_then_resume_is_bit_identical(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    ref = subprocess.run(_lifnet("train", *SMALL, "--out", str(whole)), env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr

    proc = subprocess.Popen(_lifnet("train", *SMALL, "--out", str(cut)), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = cut / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            break
        time.sleep(0.01)
    time.sleep(0.05)                     # a few batches into epoch 2
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("lifnet: stopped by SIGTERM at epoch 2, batch "), line
    assert f"lifnet train --resume {cut}" in line
    ckpt = load_checkpoint(cut / CHECKPOINT_FILE)
    assert ckpt.position.epoch == 2 and 0 < ckpt.position.batch < 135
    assert not ckpt.position.finished
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (cut / "result.json").exists()

    again = subprocess.run(_lifnet("train", "--resume", str(cut), "--threads", "1",
                                   "--quiet", "--no-plots"),
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _weights(cut) == _weights(whole)
    a = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):            # the same epochs, to the last bit (timing aside)
        for key in ("loss", "error_energy", "train_accuracy", "val_accuracy"):
            assert ra[key] == rb[key], (ra["epoch"], key)
    assert (cut / "metrics.csv").read_text().count("\n") == 4
    ra = json.loads((whole / "result.json").read_text())
    rb = json.loads((cut / "result.json").read_text())
    assert ra["test_accuracy"] == rb["test_accuracy"] and ra["confusion"] == rb["confusion"]

    # resuming a finished run trains no more and changes nothing
    done = subprocess.run(_lifnet("train", "--resume", str(cut), "--threads", "1", "--quiet",
                                  "--no-plots"), env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert _weights(cut) == _weights(whole)


def _small_trainer(**updates):
    cfg = preset_config("default").with_updates({
        "network.steps": 6, "network.channels": 1, "training.batch_size": 20,
        "training.max_epochs": 2, **updates}).validate()
    ds = load_dataset("mnist-5k").limit(100, 10)
    x, y = to_tensors(ds.train_images, ds.train_labels)
    model, coding = build(cfg, (28, 28))
    return Trainer(cfg, model, coding), x, y


@pytest.mark.parametrize("stop_after", [3, 5, 7])
def test_in_process_stop_and_resume_matches_for_sgd_with_momentum(tmp_path, stop_after):
    upd = {"training.optimizer": "sgd", "training.momentum": 0.9}
    ref, x, y = _small_trainer(**upd)
    ref.fit(x, y)
    t, _, _ = _small_trainer(**upd)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] >= stop_after

    with pytest.raises(TrainingStopped):
        t.fit(x, y, should_stop=stop)
    save_checkpoint(tmp_path / "c.safetensors", t, list("0123456789"))
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    fresh, _, _ = _small_trainer(**upd)
    restore_checkpoint(fresh, ckpt)
    fresh.fit(x, y, resume=ckpt.position)
    for (name, a), b in zip(ref.model.state_dict().items(), fresh.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_truncated_or_altered_checkpoint_is_refused(tmp_path):
    t, _, _ = _small_trainer()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, t, list("0123456789"))
    raw = path.read_bytes()
    load_checkpoint(path)                                   # whole: fine

    (tmp_path / "short.safetensors").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_checkpoint(tmp_path / "short.safetensors")

    flipped = bytearray(raw)
    flipped[-5] ^= 0x01                                      # one bit of one weight
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="altered"):
        load_checkpoint(tmp_path / "flip.safetensors")

    header = int.from_bytes(raw[:8], "little")
    text = raw[8:8 + header].decode()
    assert '\\"batch\\": 0' in text
    edited = text.replace('\\"batch\\": 0', '\\"batch\\": 1')   # same length
    (tmp_path / "edit.safetensors").write_bytes(raw[:8] + edited.encode() + raw[8 + header:])
    with pytest.raises(CheckpointError, match="altered"):
        load_checkpoint(tmp_path / "edit.safetensors")

    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04K\x01.")   # a pickle
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "pickle.safetensors")


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, capsys):
    real_loss, calls = Coding.loss, {"n": 0}

    def loss(self, spikes, labels):
        calls["n"] += 1
        value = real_loss(self, spikes, labels)
        return value * float("nan") if calls["n"] == 9 else value   # epoch 2, batch 3

    monkeypatch.setattr(Coding, "loss", loss)
    run = tmp_path / "run"
    code = main(["train", "--set", "data.train_limit=100", "--set", "data.test_limit=10",
                 "--set", "network.steps=6", "--set", "network.channels=1",
                 "--set", "training.batch_size=18", "--set", "training.validation_fraction=0",
                 "--epochs", "3", "--threads", "1", "--quiet", "--no-plots",
                 "--out", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "the loss is nan at epoch 2, batch 3 of 6" in err[0]
    assert f"last good checkpoint is kept in {run / CHECKPOINT_FILE}" in err[0]
    ckpt = load_checkpoint(run / CHECKPOINT_FILE)
    assert (ckpt.position.epoch, ckpt.position.batch) == (2, 0)
    model_meta = read_safetensors(run / "model.safetensors")[1]
    assert json.loads(model_meta["epoch"]) == 1
    for v in ckpt.model_state.values():
        assert torch.isfinite(v).all()
    assert not (run / "result.json").exists()


def test_library_raises_non_finite_loss_error(monkeypatch):
    t, x, y = _small_trainer()
    monkeypatch.setattr(Coding, "loss", lambda self, s, lab: s.sum() * float("inf"))
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 1 of 5"):
        t.fit(x, y)


def test_resume_refuses_configuration_flags_and_missing_folders(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--epochs", "3"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "checkpoint.safetensors: file not found" in capsys.readouterr().err


def test_resume_from_a_truncated_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    t, _, _ = _small_trainer()
    save_checkpoint(tmp_path / CHECKPOINT_FILE, t, list("0123456789"))
    raw = (tmp_path / CHECKPOINT_FILE).read_bytes()
    (tmp_path / CHECKPOINT_FILE).write_bytes(raw[:-100])
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a whole safetensors file" in err[0], err
