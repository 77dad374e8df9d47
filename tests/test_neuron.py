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


# -- closed form: refractory periods that are not a multiple of dt, and dt -> 0 ------------


@pytest.mark.parametrize("t_ref, dt, steps", [
    (2.5, 1.0, 3), (0.3, 1.0, 1), (1.0, 1.0, 1), (0.3, 0.1, 3), (0.35, 0.1, 4),
    (1.0, 0.1, 10), (1.7, 0.5, 4), (5.0, 0.05, 100), (0.0, 0.1, 0), (1e-12, 1.0, 0),
])
def test_refractory_steps_round_up_with_a_tolerance_for_float_multiples(t_ref, dt, steps):
    # ceil(t_ref / dt); 0.3 / 0.1 = 2.9999999999999996 and 1.0 / 0.1 = 10.000000000000002
    # in floats: both are read as the multiple they stand for
    assert LIFParameters(t_ref=t_ref, dt=dt).refractory_steps == steps


@pytest.mark.parametrize("t_ref, dt", [(0.35, 0.1), (1.7, 0.5), (2.5, 1.0), (0.05, 0.1),
                                       (0.7, 0.25), (3.3, 1.0)])
def test_closed_form_with_refractory_not_a_multiple_of_dt(t_ref, dt):
    p = LIFParameters(tau_m=8.0, t_ref=t_ref, dt=dt, v_reset=-70.0)
    steps = round(150.0 / dt)
    currents = torch.tensor([16.0, 20.0, 35.0, 80.0, 1e4], dtype=torch.float64)
    spikes, _, _ = lif_simulate(currents, p, steps=steps)
    for j, current in enumerate(currents.tolist()):
        got = torch.nonzero(spikes[:, j]).flatten().tolist()
        first, isi = first_spike_step(current, p), interspike_steps(current, p)
        assert got == list(range(first, steps, isi)), (t_ref, dt, current)
        # the interval is the steps from reset to threshold plus the rounded-up hold
        reach = math.ceil(p.tau_m / dt * math.log(
            (p.v_rest + current - p.v_reset) / (p.v_rest + current - p.v_th)) - 1e-9)
        assert isi == max(1, reach) + math.ceil(t_ref / dt - 1e-9)


def test_stepped_period_is_never_shorter_than_the_continuous_and_exceeds_it_by_under_2_dt():
    for t_ref, dt in itertools.product((0.0, 0.35, 2.0, 2.5), (1.0, 0.5, 0.1, 0.01, 0.001)):
        p = LIFParameters(tau_m=10.0, t_ref=t_ref, dt=dt)
        hold_excess = p.refractory_steps * dt - t_ref               # in [0, dt)
        for current in (15.5, 16.0, 20.0, 30.0, 60.0, 200.0):
            continuous = 1000.0 / firing_rate(current, p)
            stepped = interspike_steps(current, p) * dt
            assert -1e-9 <= stepped - continuous < dt + hold_excess + 1e-9, (t_ref, dt, current)


def test_rate_converges_to_the_continuous_formula_with_refractory_as_dt_shrinks():
    currents = (16.0, 20.0, 30.0, 60.0, 200.0)
    for t_ref in (0.0, 0.35, 2.5):
        worst = []
        for dt in (1.0, 0.1, 0.01, 0.001):
            p = LIFParameters(tau_m=10.0, t_ref=t_ref, dt=dt)
            worst.append(max(abs(stepped_rate(i, p) / firing_rate(i, p) - 1) for i in currents))
        assert worst == sorted(worst, reverse=True), (t_ref, worst)
        assert worst[-1] < 0.005                     # 0.5 % at dt = 1 us


# -- edge behaviour -----------------------------------------------------------------------


def test_spike_is_in_the_step_where_the_threshold_is_crossed():
    p = LIFParameters(tau_m=10.0)
    current = 18.0
    spikes, v, _ = lif_simulate(torch.tensor([current], dtype=torch.float64), p, steps=40,
                                record_v=True)
    v_inf = p.v_rest + current
    # V at the end of step n (no reset yet): v_inf + (v_rest - v_inf) beta^(n + 1)
    crossing = next(n for n in range(40) if v_inf + (p.v_rest - v_inf) * p.beta ** (n + 1)
                    >= p.v_th)
    assert torch.nonzero(spikes[:, 0]).flatten()[0].item() == crossing
    assert v[crossing - 1, 0] < p.v_th and v[crossing, 0] == p.v_reset
    # a current switched on in step 10 that crosses at once spikes in step 10, not 11
    step_current = torch.zeros(20, 1, dtype=torch.float64)
    step_current[10:] = 1e4
    spikes, _, _ = lif_simulate(step_current, p)
    assert torch.nonzero(spikes[:, 0]).flatten().tolist() == list(range(10, 20))


def test_samples_of_a_batch_are_independent_and_batch_size_1_works():
    from lifnet.layers import LIF

    torch.manual_seed(0)
    lif = LIF(LIFParameters(t_ref=2.0, reset="subtract"))
    batch = 30.0 * torch.rand(50, 4, 6, dtype=torch.float64)
    together, v_together = lif(batch, record_v=True)
    for b in range(4):
        alone, v_alone = lif(batch[:, b:b + 1], record_v=True)     # batch size 1
        assert alone.shape == (50, 1, 6)
        assert torch.equal(alone[:, 0], together[:, b])
        assert torch.equal(v_alone[:, 0], v_together[:, b])
    # a constant current held for `steps`, batch size 1
    one, _ = lif(torch.full((1, 3), 25.0), steps=30)
    assert one.shape == (30, 1, 3) and one.sum() > 0


def test_network_state_does_not_leak_between_batches_and_batch_size_1_works():
    from lifnet import PatchNet, preset_config

    cfg = preset_config("default").with_updates({"network.steps": 20}).validate()
    torch.manual_seed(0)
    net = PatchNet(cfg).double()
    images = torch.rand(3, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        for record in (False, True):    # fused encoding (no trains kept), then each layer
            first = net(images, record_v=record)
            net(torch.ones(2, 28, 28, dtype=torch.float64))       # another batch between
            again = net(images, record_v=record)
            single = net(images[1:2], record_v=record)
            assert torch.equal(first.spikes, again.spikes)
            assert torch.equal(single.spikes[:, 0], first.spikes[:, 1])
    assert first.encoding is not None
    assert torch.equal(first.encoding, again.encoding)
    assert single.spikes.shape[1] == 1
    assert torch.equal(single.spikes[:, 0], first.spikes[:, 1])
    assert torch.equal(single.encoding[:, 0], first.encoding[:, 1])


@pytest.mark.parametrize("reset", ["to_reset", "subtract"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_input_fires_every_step_or_refractory_period_and_never_nans(reset, dtype):
    for t_ref, period in ((0.0, 1), (1.0, 2), (2.5, 4)):
        p = LIFParameters(t_ref=t_ref, reset=reset)
        current = torch.tensor([1e6, 1e9, 1e30], dtype=dtype)
        spikes, v, _ = lif_simulate(current, p, steps=60, record_v=True)
        assert torch.isfinite(v).all() and torch.isfinite(spikes).all()
        for j in range(3):
            assert torch.nonzero(spikes[:, j]).flatten().tolist() == list(range(0, 60, period))
        if reset == "to_reset":
            # reset lands exactly on v_reset however high the potential was
            assert (v[spikes.bool()] == p.v_reset).all()


@pytest.mark.parametrize("name", ["fast_sigmoid", "sigmoid", "arctan", "triangle",
                                  "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("width", [0.1, 1.0, 10.0])
def test_surrogate_derivatives_stay_finite_at_plus_minus_1e4_mV(name, dtype, width):
    from lifnet.surrogate import spike_fn, surrogate_derivative

    x = torch.tensor([-1e4, -1e3, -1.0, 0.0, 1.0, 1e3, 1e4], dtype=dtype)
    d = surrogate_derivative(x, name, width)
    assert d.dtype == dtype and torch.isfinite(d).all() and (d >= 0).all()
    assert d[3] > 0 and d[0] <= d[3] and d[-1] <= d[3]
    xs = x.clone().requires_grad_()
    spikes = spike_fn(xs, name, width)
    assert spikes.tolist() == [0, 0, 0, 1, 1, 1, 1]
    spikes.sum().backward()
    assert torch.isfinite(xs.grad).all()


def test_a_state_made_by_hand_without_a_counter_still_gets_the_refractory_hold():
    from lifnet import LIFState

    p = LIFParameters(t_ref=2.5)
    current = torch.full((3,), 1e4)
    by_default, _, _ = lif_simulate(current, p, steps=20)
    by_hand, _, _ = lif_simulate(current, p, steps=20, state=LIFState(torch.full((3,), -65.0)))
    assert torch.equal(by_default, by_hand)
    assert torch.nonzero(by_hand[:, 0]).flatten().tolist() == [0, 4, 8, 12, 16]
