"""Targets, losses and decoders on hand-made spike trains, and the delta rule."""

import math

import numpy as np
import pytest
import torch

from lifnet.coding import Coding, error_energy, slot_bounds, target_distances, window_targets
from lifnet.config import CodingConfig
from lifnet.layers import LIF, DenseSynapse
from lifnet.neuron import LIFParameters
from lifnet.surrogate import surrogate_derivative


def test_slots_cover_the_window_including_each_slots_last_step():
    assert slot_bounds(100, 10) == [(10 * c, 10 * c + 9) for c in range(10)]
    assert slot_bounds(25, 10)[-1] == (18, 19)


def test_regular_targets_are_label_specific_and_centred():
    t = window_targets(10, 100, spikes_per_slot=1)
    assert t.shape == (10, 100, 10)
    for c in range(10):
        assert torch.nonzero(t[c]).tolist() == [[10 * c + 5, c]]
    t3 = window_targets(10, 100, spikes_per_slot=3)
    assert torch.nonzero(t3[2][:, 2]).flatten().tolist() == [21, 25, 28]


def test_random_targets_are_seeded_nonempty_inside_the_slot():
    a = window_targets(10, 100, spikes_per_slot=10, times="random", seed=3)
    b = window_targets(10, 100, spikes_per_slot=10, times="random", seed=3)
    c = window_targets(10, 100, spikes_per_slot=10, times="random", seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    used_last = False
    for k in range(10):
        steps = torch.nonzero(a[k][:, k]).flatten()
        assert 1 <= len(steps) <= 10
        assert steps.min() >= 10 * k and steps.max() <= 10 * k + 9
        assert a[k].sum() == len(steps)          # every other neuron silent
        used_last |= bool((steps == 10 * k + 9).any())
    # over many seeds the last step of a slot gets drawn (the notebook never drew it)
    assert used_last or any(
        window_targets(10, 100, 10, "random", s)[0][9, 0] == 1 for s in range(50))


def test_error_energy_and_nearest_target_decoding_by_hand():
    cfg = CodingConfig(scheme="window", loss="error_energy", target_spikes=2)
    coding = Coding(cfg, steps=20, num_classes=4)          # slots of 5 steps
    out = coding.desired(torch.tensor([3, 1])).clone()     # (T, B, K), exact targets
    assert coding.error_energy(out, torch.tensor([3, 1])).tolist() == [0.0, 0.0]
    assert coding.decode(out).tolist() == [3, 1]
    out[0, 0, 0] = 1.0                                      # one extra spike: E = 1/2
    assert coding.error_energy(out, torch.tensor([3, 1])).tolist() == [0.5, 0.0]
    assert float(coding.loss(out, torch.tensor([3, 1]))) == pytest.approx(0.25)
    brute = torch.stack([error_energy(out, coding.targets[c][:, None].expand(-1, 2, -1))
                         for c in range(4)], 1)
    assert torch.allclose(target_distances(out, coding.targets), brute)


def test_silent_output_decodes_to_the_lowest_class_by_tie():
    coding = Coding(CodingConfig(scheme="window", loss="error_energy"), 20, 4)
    assert coding.decode(torch.zeros(20, 3, 4)).tolist() == [0, 0, 0]


def test_rate_losses_and_most_spikes_decoding():
    spikes = torch.zeros(10, 2, 3)
    spikes[:5, 0, 1] = 1                    # sample 0: 5 spikes on class 1
    spikes[:2, 1, 0] = spikes[:2, 1, 2] = 1  # sample 1: a tie between 0 and 2
    labels = torch.tensor([1, 2])
    ce = Coding(CodingConfig(), 10, 3)
    assert ce.decode(spikes).tolist() == [1, 0]
    want = (-math.log(math.exp(5) / (2 + math.exp(5)))
            - math.log(math.exp(2) / (2 * math.exp(2) + 1))) / 2
    assert float(ce.loss(spikes, labels)) == pytest.approx(want, rel=1e-6)
    mse = Coding(CodingConfig(loss="mse_count", target_rate=0.8), 10, 3)
    # targets: 8 spikes on the right class; errors (0, 3, 0) and (2, 0, -6)
    assert float(mse.loss(spikes, labels)) == pytest.approx((9 + 4 + 36) / 6)


def _delta_rule(w, b, inputs, desired, p, width, lr):
    """The notebook's delta rule, derived by hand for dense synapses into LIF neurons.

    U[n] = v_rest + (P[n-1] - v_rest) beta + (1 - beta) R I[n],  s[n] = H(U[n] - v_th),
    P[n] = U[n] - s[n] (U[n] - v_reset) (the reset taken as constant).
    Local gradient, backwards in time: delta[n] = (d[n] - s[n]) sigma'(U[n] - v_th)
    + beta (1 - s[n]) delta[n+1]; then dW[k, u] = lr * mean_b sum_n delta_k[n] (1 - beta) R
    S_u[n].
    """
    t_steps, batch, _ = inputs.shape
    beta = math.exp(-p.dt / p.tau_m)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    for i in range(batch):
        current = inputs[:, i] @ w.T + b                        # (T, K)
        u = np.zeros_like(current)
        s = np.zeros_like(current)
        prev = np.full(w.shape[0], p.v_init)
        for n in range(t_steps):
            u[n] = p.v_rest + (prev - p.v_rest) * beta + (1 - beta) * p.resistance * current[n]
            s[n] = (u[n] >= p.v_th).astype(float)
            prev = u[n] - s[n] * (u[n] - p.v_reset)
        sig = surrogate_derivative(torch.from_numpy(u - p.v_th), "fast_sigmoid", width).numpy()
        delta = np.zeros_like(u)
        for n in reversed(range(t_steps)):
            delta[n] = (desired[n, i] - s[n]) * sig[n]
            if n + 1 < t_steps:
                delta[n] += beta * (1 - s[n]) * delta[n + 1]
        local = delta * (1 - beta) * p.resistance                # (T, K)
        dw += lr * local.T @ inputs[:, i] / batch
        db += lr * local.sum(0) / batch
    return dw, db


def test_output_gradient_under_error_energy_is_the_hand_derived_delta_rule():
    torch.manual_seed(0)
    p = LIFParameters(tau_m=10.0, v_rest=-65.0, v_th=-50.0)
    t_steps, batch, n_in, k = 30, 4, 12, 3
    syn = DenseSynapse(n_in, k, weight_scale=60.0).double()
    with torch.no_grad():
        syn.bias.fill_(14.0)                                    # near rheobase (15 nA)
    lif = LIF(p, surrogate="fast_sigmoid", surrogate_width=2.0)
    inputs = (torch.rand(t_steps, batch, n_in) < 0.5).double()
    coding = Coding(CodingConfig(scheme="window", loss="error_energy", target_spikes=3),
                    t_steps, k)
    labels = torch.tensor([0, 1, 2, 1])
    spikes, _ = lif(syn(inputs))
    assert 0 < spikes.sum() < spikes.numel()                   # some spikes, not all
    loss = coding.loss(spikes, labels)
    loss.backward()
    lr = 0.01
    desired = coding.desired(labels).double().numpy()
    dw, db = _delta_rule(syn.weight.detach().numpy(), syn.bias.detach().numpy(),
                         inputs.numpy(), desired, p, 2.0, lr)
    np.testing.assert_allclose(-lr * syn.weight.grad.numpy(), dw, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(-lr * syn.bias.grad.numpy(), db, rtol=1e-9, atol=1e-12)
