"""Edge cases of the fast paths found by a tester: large potentials before a reset, beta
that rounds to 0 or 1 in float32, small dt, half-precision currents, the thread count.
Each holds the fast paths to the reference (spikes bit for bit, gradients to 2e-4)."""

import pytest
import torch
from torch.nn import functional as F

import lifnet
from lifnet.fast import _STATE, encode_constant, encode_dense, lif_fused
from lifnet.neuron import lif_simulate


@pytest.fixture(params=[True, False], ids=["kernels", "pytorch"])
def kernels(request):
    saved = _STATE["kernels"]
    _STATE["kernels"] = None if request.param else False
    yield request.param
    _STATE["kernels"] = saved


def test_fused_reset_at_large_potentials_matches_reference(kernels):
    """Spikes bit for bit: after a burst that lifts the potential far above threshold,
    the fast paths reset with u - (u - v_reset), which neuron.py's lif_step avoids
    ("at large potentials that cancels to the wrong value"): later spikes move."""
    g = torch.Generator().manual_seed(0)
    p = lifnet.LIFParameters(tau_m=10.0, v_rest=-65.0, v_th=-50.0, v_reset=-70.3)
    n, steps = 20000, 60
    cur = (15.0 + 10 * torch.rand(n, generator=g)).expand(steps, n).clone()
    cur[0] = 1e4 * (1 + torch.rand(n, generator=g))        # one strong step (10-20 uA)
    assert torch.equal(lif_fused(cur, p), lif_simulate(cur, p)[0])


def test_encode_constant_v_init_far_above_threshold(kernels):
    """Spikes bit for bit with v_init above threshold (allowed by LIFParameters)."""
    g = torch.Generator().manual_seed(0)
    p = lifnet.LIFParameters(tau_m=10.0, v_rest=-65.0, v_th=-50.0, v_reset=-70.3,
                             v_init=3.3e7)
    cur = 15.0 + 10 * torch.rand(20000, generator=g)
    assert torch.equal(encode_constant(cur, p, 60), lif_simulate(cur, p, 60)[0])


@pytest.mark.parametrize("tau_m, dt", [(1e8, 1.0), (1e-3, 0.5)])
def test_closed_form_beta_rounding_to_0_or_1_in_float32(tau_m, dt):
    """Without the kernels (a GPU, or numba missing) encode_constant raises
    ZeroDivisionError / ValueError (math domain error) when float32(beta) is 1.0 or 0.0
    while the float64 beta that closed_form_covers checks lies inside (0, 1)."""
    saved = _STATE["kernels"]
    _STATE["kernels"] = False
    try:
        p = lifnet.LIFParameters(tau_m=tau_m, dt=dt, v_rest=-65.0, v_th=-50.0)
        cur = torch.tensor([[3e8, 20.0, 10.0]])
        assert torch.equal(encode_constant(cur, p, 20), lif_simulate(cur, p, 20)[0])
    finally:
        _STATE["kernels"] = saved


@pytest.mark.parametrize("dt, tau_m, steps", [(0.01, 20.0, 300), (0.01, 100.0, 300)])
def test_encoding_gradient_small_dt_without_kernels(dt, tau_m, steps):
    """Gradients to ~2e-4 relative at a small dt: the closed-form encoding backward (and
    the fused encode_dense backward) evaluate 1 - beta^m in float32, which cancels when
    beta is near 1 (measured: 2e-4 at dt 0.1 ms, 1.4e-3 at 0.01 ms / tau_m 20 ms, 4.5e-3
    at 0.01 / 100 without the kernels; 2e-4 with them at 0.01 / 100)."""
    saved = _STATE["kernels"]
    _STATE["kernels"] = False
    torch.manual_seed(0)
    p = lifnet.LIFParameters(tau_m=tau_m, dt=dt, v_rest=-65.0, v_th=-50.0)
    cur = 15.0 / (1 - p.beta ** (steps / 3)) * (0.5 + torch.rand(4, 200))
    w = torch.randn(10, 200)
    a, b = cur.clone().requires_grad_(), cur.clone().requires_grad_()
    ref = F.linear(lif_simulate(a, p, steps)[0], w)
    gy = torch.randn_like(ref)
    (ref * gy).sum().backward()
    (encode_dense(b, w, None, p, steps) * gy).sum().backward()
    _STATE["kernels"] = saved
    err = ((b.grad - a.grad).abs().max() / a.grad.abs().max()).item()
    assert err <= 2e-4, err


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_lif_layer_half_precision_constant_current(dtype):
    """LIF(fast=True) gives fast=False's spikes (layers.py docstring). A bfloat16/float16
    current (a user's synapse under autocast) goes to the closed form, whose threshold
    tolerances are float32's: about a third of the trains differ in bfloat16."""
    from lifnet.layers import LIF
    torch.manual_seed(0)
    p = lifnet.LIFParameters()
    c = (10 + 20 * torch.rand(8, 500)).to(dtype)
    assert torch.equal(LIF(p, fast=True)(c, steps=30)[0], LIF(p, fast=False)(c, steps=30)[0])


def test_kernels_keep_the_thread_count():
    """--threads 1 is torch.set_num_threads(1) once at start; the first kernel call
    launches numba's "omp" threading layer, which sets the OpenMP thread count PyTorch
    reads too (to 2 on a 2-core machine: `lifnet train --threads 1` ran at 129 % CPU and
    --nproc 2 --threads 1 oversubscribed). The kernels give PyTorch its count back. In a
    fresh process, since numba launches its pool once per process."""
    import os
    import subprocess
    import sys
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores to show")
    code = ("import torch, lifnet\n"
            "from lifnet.fast import lif_fused\n"
            "torch.set_num_threads(1)\n"
            "lif_fused(torch.rand(4, 50) * 30, lifnet.LIFParameters(), 5)\n"
            "print(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=300)
    assert out.stdout.split()[-1] == "1"
