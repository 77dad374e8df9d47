"""The neuron: validation, the exact step, and the stepped simulation against the closed form."""

import itertools
import math

import pytest
import torch

from lifnet import (
    ConfigError,
    LIFParameters,
    firing_rate,
    first_spike_step,
    interspike_steps,
    lif_simulate,
    spike_count,
    stepped_rate,
)


def test_capacitance_and_tau_derive_each_other():
    p = LIFParameters(resistance=2.0, capacitance=5.0)
    assert p.tau_m == pytest.approx(10.0)
    q = LIFParameters(resistance=2.0, tau_m=10.0)
    assert q.capacitance == pytest.approx(5.0)
    assert LIFParameters().tau_m == 10.0 and LIFParameters().v_reset == -65.0


@pytest.mark.parametrize("kwargs, match", [
    ({"capacitance": -1.0}, r"neuron.capacitance = -1.0 .*> 0 nF"),
    ({"resistance": 0.0}, r"neuron.resistance = 0.0 .*> 0 MOhm"),
    ({"dt": -0.1}, r"neuron.dt = -0.1 .*> 0 ms"),
    ({"t_ref": -1.0}, r"neuron.t_ref = -1.0 .*>= 0 ms"),
    ({"v_th": -70.0, "v_reset": -65.0}, r"neuron.v_th = -70.0 .*> v_reset = -65.0 mV"),
    ({"v_th": -66.0, "v_rest": -65.0, "v_reset": -70.0}, r"neuron.v_th .*spontaneous"),
    ({"resistance": 1.0, "capacitance": 10.0, "tau_m": 5.0}, r"neuron.tau_m = 5.0 .*disagree"),
    ({"reset": "zero"}, r"neuron.reset = 'zero'.*'to_reset' or 'subtract'"),
    ({"dt": float("nan")}, r"neuron.dt = nan .*finite"),
])
def test_invalid_parameters_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LIFParameters(**kwargs)


def test_spontaneous_firing_must_be_asked_for():
    p = LIFParameters(v_rest=-45.0, v_reset=-70.0, v_th=-50.0, spontaneous=True)
    spikes, _, _ = lif_simulate(torch.zeros(1), p, steps=50)
    assert spikes.sum() > 0


def test_one_step_is_the_exponential_integrator():
    p = LIFParameters(resistance=2.0, tau_m=7.0, v_rest=-60.0, v_th=0.0, dt=0.5)
    v0, current = -55.0, 3.0
    _, trace, _ = lif_simulate(torch.tensor([current]), p, steps=1,
                               state=None, record_v=True)
    # from v_init = v_rest: V(dt) = V_inf + (v_rest - V_inf) exp(-dt / tau)
    v_inf = -60.0 + 2.0 * current
    assert trace[0, 0].item() == pytest.approx(v_inf + (-60.0 - v_inf) * math.exp(-0.5 / 7.0))
    del v0


def test_potential_exactly_at_threshold_spikes_and_resets():
    # from rest, a current that lands exactly on threshold in one step (dt = tau * ln 2)
    p = LIFParameters(resistance=1.0, tau_m=1.0, v_rest=0.0, v_th=1.0, dt=math.log(2.0))
    s, v, _ = lif_simulate(torch.tensor([2.0], dtype=torch.float64), p, steps=1,
                           record_v=True)
    assert s[0, 0] == 1.0 and v[0, 0] == 0.0


def _grid():
    params = []
    for tau, dt, t_ref, (v_rest, v_reset, v_init) in itertools.product(
            (2.0, 10.0, 30.0), (0.1, 0.5, 1.0), (0.0, 1.0, 2.5),
            ((-65.0, -65.0, -65.0), (-65.0, -70.0, -60.0), (-70.0, -68.0, -75.0))):
        params.append(LIFParameters(resistance=1.0, tau_m=tau, v_rest=v_rest,
                                    v_reset=v_reset, v_init=v_init, v_th=-50.0, dt=dt,
                                    t_ref=t_ref))
    return params


def _near_threshold(p, current, steps):
    """True when a potential of the stepped run lands within 1e-9 mV of threshold: there
    float rounding may decide the comparison differently in the recursion and the formula."""
    v_inf = p.v_rest + p.resistance * current
    for v0 in (p.v_init, p.v_reset):
        for k in range(1, steps + 1):
            if abs(v_inf + (v0 - v_inf) * p.beta ** k - p.v_th) < 1e-9:
                return True
    return False


def test_stepped_simulation_equals_closed_form_on_a_grid():
    steps, compared = 200, 0
    for p in _grid():
        currents = torch.tensor([0.0, 5.0, 14.99, 15.01, 16.0, 20.0, 30.0, 60.0, 150.0, 1e4],
                                dtype=torch.float64) * p.resistance
        spikes, _, _ = lif_simulate(currents, p, steps=steps)
        for j, current in enumerate(currents.tolist()):
            if _near_threshold(p, current, steps):
                continue
            got = torch.nonzero(spikes[:, j]).flatten().tolist()
            first, isi = first_spike_step(current, p), interspike_steps(current, p)
            if first is None:
                want = []
            elif isi is None:
                want = [first]
            else:
                want = list(range(first, steps, isi))
            assert got == want, (p, current)
            assert len(got) == spike_count(current, p, steps)
            compared += 1
    assert compared > 700


def test_refractory_rounds_up_to_whole_steps():
    p = LIFParameters(t_ref=2.5, dt=1.0)
    assert p.refractory_steps == 3
    assert LIFParameters(t_ref=3.0, dt=0.1).refractory_steps == 30
    # a neuron that would fire every step fires every 1 + 3 steps
    s, _, _ = lif_simulate(torch.tensor([1e4]), p, steps=20)
    assert torch.nonzero(s[:, 0]).flatten().tolist() == [0, 4, 8, 12, 16]


def test_subtract_reset_keeps_the_overshoot():
    p = LIFParameters(reset="subtract", v_rest=0.0, v_th=10.0, v_reset=0.0, tau_m=10.0)
    s, v, _ = lif_simulate(torch.tensor([100.0], dtype=torch.float64), p, steps=2,
                           record_v=True)
    v1 = 100.0 * (1 - math.exp(-0.1))                      # 9.52 mV: below threshold
    assert s[0, 0] == 0.0 and v[0, 0].item() == pytest.approx(v1)
    v2 = 100.0 + (v1 - 100.0) * math.exp(-0.1)             # 18.1 mV: spike, minus 10 mV
    assert s[1, 0] == 1.0 and v[1, 0].item() == pytest.approx(v2 - 10.0)


def test_rate_converges_to_the_continuous_formula_as_dt_shrinks():
    errors = []
    for dt in (1.0, 0.1, 0.01):
        p = LIFParameters(tau_m=10.0, t_ref=2.0, dt=dt)
        errors.append(abs(stepped_rate(20.0, p) - firing_rate(20.0, p)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] / firing_rate(20.0, LIFParameters(tau_m=10.0, t_ref=2.0)) < 0.01


def test_zero_input_from_rest_never_spikes_and_huge_input_never_nans():
    p = LIFParameters()
    s, v, _ = lif_simulate(torch.zeros(4, 3), p, steps=100, record_v=True)
    assert s.sum() == 0
    s, v, _ = lif_simulate(torch.full((4, 3), 1e9), p, steps=100, record_v=True)
    assert s.sum() == 4 * 3 * 100 and torch.isfinite(v).all()


def test_state_does_not_leak_between_calls():
    p = LIFParameters()
    first, _, _ = lif_simulate(torch.full((2, 5), 30.0), p, steps=30)
    again, _, _ = lif_simulate(torch.full((2, 5), 30.0), p, steps=30)
    assert torch.equal(first, again)
