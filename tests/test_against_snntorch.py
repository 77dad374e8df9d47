"""lifnet's neuron against ``snntorch.Leaky``, spike for spike, on random current sequences.

snnTorch's Leaky neuron is dimensionless: ``mem[t] = beta * mem[t-1] + x[t]``, a spike when
``mem > threshold``, then a reset. lifnet's exact step is the same recursion once potentials
are measured from a reference ``c`` and currents are turned into potential increments:

    beta      = exp(-dt / tau_m)
    mem       = V - c                               (mV)
    x[n]      = (1 - beta) * (R * I[n] + v_rest - c)  (mV; R in MOhm, I in nA)
    threshold = v_th - c                            (mV)

The reset modes (see docs/neuron.md):

- lifnet ``"to_reset"`` is snnTorch ``reset_mechanism="zero"`` with ``c = v_reset``, with
  ``reset_delay`` True (the default) or False: zeroing the membrane at the start of the next
  step, before it decays, is the same as zeroing it at the end of this one.
- snnTorch's default ``"subtract"`` with ``reset_delay=True`` subtracts the threshold one step
  late, so undecayed: it is lifnet ``"subtract"`` with ``v_th - v_reset = threshold / beta``
  (``c = v_th - beta * (v_th - v_reset)``).
- snnTorch ``"subtract"`` with ``reset_delay=False`` is lifnet ``"subtract"`` with
  ``c = v_reset`` as long as a reset potential is below threshold; when one is not (an input
  so strong that the membrane is still above threshold after subtracting), snnTorch takes
  that step's spike decision after subtracting the threshold a second time, so the test
  leaves such sequences out and counts them.

snnTorch spikes on ``>``, lifnet on ``>=``; sequences where a potential lands within 1e-9 mV
of threshold are left out and counted (float64 throughout; the two recursions are the same
function evaluated in a different order, ~1e-13 mV apart).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import snntorch
import torch

from lifnet import LIFParameters, lif_simulate

NEAR = 1e-9
SETS, PER_SET, STEPS = 25, 40, 150          # 25 parameter sets x 40 sequences = 1,000


def _random_sets(seed: int, reset: str):
    rng = np.random.default_rng(seed)
    for _ in range(SETS):
        v_rest = rng.uniform(-75.0, -55.0)
        v_th = v_rest + rng.uniform(5.0, 25.0)
        v_reset = v_rest + rng.uniform(-10.0, 3.0)
        p = LIFParameters(
            resistance=rng.uniform(0.5, 3.0), tau_m=rng.uniform(2.0, 50.0), v_rest=v_rest,
            v_th=v_th, v_reset=v_reset, v_init=rng.uniform(v_reset - 5.0, v_th - 0.5),
            dt=float(rng.choice([0.05, 0.1, 0.5, 1.0])), reset=reset)
        # random currents from -1 to 6 times the rheobase, each held for a random stretch
        # (a new level with probability 0.15 at every step)
        levels = rng.uniform(-1.0, 6.0, size=(STEPS, PER_SET)) * p.rheobase
        change = rng.random((STEPS, PER_SET)) < 0.15
        change[0] = True
        idx = np.maximum.accumulate(np.where(change, np.arange(STEPS)[:, None], 0), axis=0)
        currents = np.take_along_axis(levels, idx, axis=0)
        yield p, currents


def _snntorch(p: LIFParameters, currents: np.ndarray, c: float, threshold: float,
              mechanism: str, reset_delay: bool):
    """Spike trains and pre-reset potentials (mV, measured from ``c``) of snntorch.Leaky."""
    beta = torch.tensor(p.beta, dtype=torch.float64)
    neuron = snntorch.Leaky(beta=beta, threshold=torch.tensor(threshold, dtype=torch.float64),
                            reset_mechanism=mechanism, reset_delay=reset_delay)
    x = torch.from_numpy((1.0 - p.beta) * (p.resistance * currents + p.v_rest - c))
    mem = torch.full((currents.shape[1],), p.v_init - c, dtype=torch.float64)
    spikes = []
    with torch.no_grad():
        for n in range(currents.shape[0]):
            spk, mem = neuron(x[n], mem)
            spikes.append(spk.to(torch.float64))
    return torch.stack(spikes)


def _lifnet(p: LIFParameters, currents: np.ndarray):
    """Spike trains, and the potentials before and after each reset (mV)."""
    current = torch.from_numpy(currents)
    spikes, after, _ = lif_simulate(current, p, record_v=True)
    before_v = torch.cat([torch.full_like(after[:1], p.v_init), after[:-1]])
    before = p.v_rest + (before_v - p.v_rest) * p.beta + (1 - p.beta) * p.resistance * current
    return spikes, before, after


def _compare(agreement, reset, mechanism, reset_delay, mapping, label, seed):
    compared = near = overshoot = spikes_seen = 0
    for p, currents in _random_sets(seed, reset):
        c, threshold = mapping(p)
        got, before, after = _lifnet(p, currents)
        want = _snntorch(p, currents, c, threshold, mechanism, reset_delay)
        for j in range(PER_SET):
            if (before[:, j] - p.v_th).abs().min() < NEAR:
                near += 1
                continue
            if mechanism == "subtract" and not reset_delay and (after[:, j] >= p.v_th).any():
                overshoot += 1
                continue
            assert torch.equal(got[:, j], want[:, j]), (
                f"{label}: lifnet {torch.nonzero(got[:, j]).flatten().tolist()[:8]} != "
                f"snntorch {torch.nonzero(want[:, j]).flatten().tolist()[:8]} for {p}")
            compared += 1
            spikes_seen += int(got[:, j].sum())
    extra = f", {overshoot} left out (reset potential above threshold)" if overshoot else ""
    agreement(f"snnTorch {snntorch.__version__} Leaky, {label}: {compared} of "
              f"{SETS * PER_SET} random sequences equal spike for spike ({spikes_seen} spikes), "
              f"{near} left out (a potential within {NEAR:g} mV of threshold){extra}")
    return compared, spikes_seen, overshoot


@pytest.mark.parametrize("reset_delay", [True, False])
def test_to_reset_equals_snntorch_zero_reset(agreement, reset_delay):
    compared, spikes_seen, _ = _compare(
        agreement, "to_reset", "zero", reset_delay,
        lambda p: (p.v_reset, p.v_th - p.v_reset),
        f"lifnet to_reset = reset_mechanism='zero', reset_delay={reset_delay}", seed=1)
    assert compared >= 990 and spikes_seen > 5_000


def test_subtract_equals_snntorch_default_with_threshold_over_beta(agreement):
    def mapping(p):
        threshold = p.beta * (p.v_th - p.v_reset)
        return p.v_th - threshold, threshold

    compared, spikes_seen, _ = _compare(
        agreement, "subtract", "subtract", True, mapping,
        "lifnet subtract (v_th - v_reset = threshold / beta) = snnTorch default "
        "(subtract, reset_delay=True)", seed=2)
    assert compared >= 990 and spikes_seen > 5_000


def test_subtract_equals_snntorch_subtract_without_delay(agreement):
    compared, spikes_seen, overshoot = _compare(
        agreement, "subtract", "subtract", False,
        lambda p: (p.v_reset, p.v_th - p.v_reset),
        "lifnet subtract = reset_mechanism='subtract', reset_delay=False", seed=3)
    assert compared >= 800 and overshoot < 200 and spikes_seen > 5_000


def test_default_delayed_subtract_is_not_lifnet_subtract_with_the_same_threshold():
    """The mapping matters: with snnTorch's default reset and the plain threshold, the
    trains part, because the subtracted threshold has not decayed."""
    p = LIFParameters(tau_m=5.0, dt=1.0, reset="subtract")
    currents = np.full((STEPS, 1), 3.0 * p.rheobase)
    got, _, _ = _lifnet(p, currents)
    want = _snntorch(p, currents, p.v_reset, p.v_th - p.v_reset, "subtract", True)
    assert not torch.equal(got, want)
    assert got.sum() > want.sum()           # lifnet subtracts less (beta * threshold)
    assert math.isclose(p.beta, math.exp(-0.2))
