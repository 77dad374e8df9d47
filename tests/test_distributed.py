"""Several processes through torchrun and gloo, on this machine's CPUs."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

SMALL = ["--set", "data.train_limit=300", "--set", "data.test_limit=100",
         "--set", "network.steps=8", "--set", "network.channels=1",
         "--set", "training.batch_size=64", "--set", "training.validation_fraction=0.1",
         "--epochs", "1", "--quiet", "--no-plots", "--threads", "1", "--device", "cpu"]


def _env():
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def _torchrun(n, *args, timeout=240):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={n}", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def test_two_processes_end_with_the_weights_of_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    proc = subprocess.run([sys.executable, "-m", "lifnet", "train", *SMALL, "--out", str(one)],
                          capture_output=True, text=True, timeout=240, env=_env())
    assert proc.returncode == 0, proc.stderr
    proc = _torchrun(2, "-m", "lifnet", "train", *SMALL, "--out", str(two))
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(one / "model.safetensors")
    b = load_file(two / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-5), (
            key, (a[key] - b[key]).abs().max())
    # the weights moved, so the comparison says something
    init = tmp_path / "init"
    proc = subprocess.run([sys.executable, "-m", "lifnet", "train", *SMALL, "--set",
                           "training.encoding_lr=1e-12", "--set", "training.output_lr=1e-12",
                           "--out", str(init)], capture_output=True, text=True, timeout=240,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    c = load_file(init / "model.safetensors")
    assert any((a[k] - c[k]).abs().max() > 1e-3 for k in a)
    import json

    r1 = json.loads((one / "result.json").read_text())
    r2 = json.loads((two / "result.json").read_text())
    assert r2["processes"] == 2 and r1["processes"] == 1
    assert abs(r1["test_accuracy"] - r2["test_accuracy"]) <= 0.02
    # only rank 0 wrote: one run folder, nothing else in tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init", "one", "two"]


def test_a_failing_rank_stops_the_other_instead_of_hanging(tmp_path):
    script = tmp_path / "fail_rank1.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        import lifnet.training as training
        from lifnet.cli import main

        original = training.Trainer.train_epoch

        def train_epoch(self, *args, **kwargs):
            if self.ctx.rank == 1:
                raise RuntimeError("rank 1 fails on purpose")
            return original(self, *args, **kwargs)

        training.Trainer.train_epoch = train_epoch
        sys.exit(main(sys.argv[1:]))
    """))
    proc = _torchrun(2, str(script), "train", *SMALL, "--out", str(tmp_path / "run"),
                     timeout=200)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr


def test_nproc_shortcut_refuses_zero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lifnet", "train", "--nproc", "0"],
                          capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2 and "--nproc 0" in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_device_is_used(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lifnet", "train", *SMALL[:-1], "cuda",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=240, env=_env())
    assert proc.returncode == 0, proc.stderr


def test_device_cuda_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    proc = subprocess.run([sys.executable, "-m", "lifnet", "train", "--device", "cuda"],
                          capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert proc.returncode == 2
    assert "--device = 'cuda'" in proc.stderr and "no CUDA device" in proc.stderr
    assert not (tmp_path / "runs").exists()
