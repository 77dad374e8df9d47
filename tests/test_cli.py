"""The command line, run as a user runs it: real processes, real files."""

import json
import os
import subprocess
import sys

import pytest

from lifnet import errors as lifnet_errors

SMALL = ["--set", "data.train_limit=400", "--set", "data.test_limit=200",
         "--set", "network.steps=10", "--set", "network.channels=2",
         "--set", "training.batch_size=32", "--epochs", "1", "--quiet"]


def lifnet(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lifnet", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_one_epoch_run_writes_the_run_folder_and_evaluate_reads_it(tmp_path):
    run = tmp_path / "run"
    proc = lifnet("train", *SMALL, "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    result = json.loads((run / "result.json").read_text())
    for key in ("test_accuracy", "mean_error_energy", "epochs", "train_seconds",
                "train_samples_per_second", "dataset", "preset"):
        assert key in result, key
    assert result["dataset"] == "mnist-5k" and result["preset"] == "default"
    assert result["epochs"] == 1 and result["test_samples"] == 200
    assert 0.1 < result["test_accuracy"] <= 1.0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    epoch = json.loads(lines[0])
    for key in ("loss", "error_energy", "train_accuracy", "val_accuracy",
                "samples_per_second", "seconds"):
        assert key in epoch, key
    assert (run / "model.safetensors").stat().st_size > 0
    assert 'preset = "default"' in (run / "config.toml").read_text()

    proc = lifnet("evaluate", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)
    assert ev["accuracy"] == pytest.approx(result["test_accuracy"])
    assert sum(map(sum, ev["confusion"])) == 200

    proc = lifnet("evaluate", str(run))
    assert proc.returncode == 0 and "confusion matrix" in proc.stdout

    # the saved configuration reads back
    again = tmp_path / "again"
    proc = lifnet("train", "--config", str(run / "config.toml"), "--quiet", "--out", str(again))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((again / "result.json").read_text())["test_accuracy"] == pytest.approx(
        result["test_accuracy"])


@pytest.mark.parametrize("setting, words", [
    ("neuron.colour=3", ["unknown key 'neuron.colour'", "accepted:"]),
    ("bogus=1", ["unknown key 'bogus'"]),
    ("neuron.capacitance=-1", ["neuron.capacitance = -1.0 is out of range", "> 0 nF"]),
    ("neuron.v_th=-70", ["neuron.v_th = -70.0", "> v_reset = -65.0 mV"]),
    ("network.patch_size=30", ["network.patch_size = 30", "<= 28 px"]),
    ("network.steps=abc", ["network.steps = 'abc' is not valid", "an integer"]),
    ("network.fast=maybe", ["network.fast = 'maybe' is not valid", "true or false"]),
])
def test_bad_set_exits_2_with_one_line_and_no_run_folder(tmp_path, setting, words):
    proc = lifnet("train", "--set", setting, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()


def test_window_shorter_than_one_step_per_class_is_refused(tmp_path):
    proc = lifnet("train", "--preset", "notebook", "--set", "network.steps=9", cwd=tmp_path)
    assert proc.returncode == 2
    assert "network.steps = 9" in proc.stderr and ">= network.num_classes = 10" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_evaluate_a_missing_or_truncated_run(tmp_path):
    proc = lifnet("evaluate", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "not a run folder" in proc.stderr
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    proc = lifnet("evaluate", str(tmp_path))
    assert proc.returncode == 2 and "not a whole safetensors file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_command_is_a_usage_error_with_the_help_on_stderr():
    r = lifnet()
    assert r.returncode == 2
    assert r.stdout == ""
    assert "usage: lifnet" in r.stderr and "train" in r.stderr


def test_a_config_file_and_another_preset_are_refused(tmp_path):
    conf = tmp_path / "nb.toml"
    conf.write_text(lifnet("config", "--preset", "notebook").stdout)
    r = lifnet("train", "--config", str(conf), "--preset", "default", cwd=tmp_path)
    assert r.returncode == 2
    assert "whose preset is 'notebook'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_two_runs_never_share_a_run_folder(tmp_path):
    from lifnet.cli.train import claim_run_dir
    base = tmp_path / "runs" / "20261204-120000-default"
    first = claim_run_dir(base, explicit=False)
    second = claim_run_dir(base, explicit=False)   # another run, the same second
    assert first == base and second.name == base.name + "-2" and second.is_dir()
    out = tmp_path / "out"
    assert claim_run_dir(out, explicit=True) == out
    with pytest.raises(lifnet_errors.ConfigError, match="another run has just started"):
        claim_run_dir(out, explicit=True)


def test_the_cli_formats_only_lifnets_own_warnings_and_restores_the_formatter():
    import warnings

    from lifnet.cli import main
    before = warnings.formatwarning
    assert main(["config"]) == 0
    assert warnings.formatwarning is before


def test_evaluate_a_folder_that_is_not_a_run(tmp_path):
    r = lifnet("evaluate", str(tmp_path))
    assert r.returncode == 2 and "not a run folder" in r.stderr and "model.safetensors" in r.stderr
