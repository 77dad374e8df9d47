"""The fast paths (lifnet.fast) against the stepped reference (lif_simulate).

Spikes must be identical; gradients equal to float tolerance.
"""

import math

import pytest
import torch

import lifnet
from lifnet.fast import closed_form_covers, covers, encode_constant, lif_fused
from lifnet.layers import LIF, PatchEncoding
from lifnet.neuron import LIFParameters, lif_simulate


def _grad(fn, current, upstream):
    current = current.detach().clone().requires_grad_()
    spikes = fn(current)
    (g,) = torch.autograd.grad((spikes * upstream).sum(), current)
    return spikes.detach(), g


def _assert_close_grads(got, want):
    scale = want.abs().max().clamp_min(1e-6)
    assert ((got - want).abs().max() / scale) < 2e-4, (got - want).abs().max()


PARAMS = [
    LIFParameters(),
    LIFParameters(reset="subtract"),
    LIFParameters(tau_m=20.0, v_reset=-70.0, v_init=-60.0, dt=0.5),
    LIFParameters(tau_m=5.0, v_reset=-55.0, v_init=-75.0, dt=0.5, reset="subtract"),
]


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("detach_reset", [True, False])
def test_fused_window_matches_reference_spikes_and_gradients(p, detach_reset):
    torch.manual_seed(0)
    current = torch.randn(30, 6, 40) * 40 + 35              # nA, varying over the window
    upstream = torch.randn(30, 6, 40)
    ref_s, ref_g = _grad(lambda i: lif_simulate(i, p, detach_reset=detach_reset)[0],
                         current, upstream)
    s, g = _grad(lambda i: lif_fused(i, p, detach_reset=detach_reset), current, upstream)
    assert ref_s.sum() > 50                                  # the test has spikes to match
    assert torch.equal(s, ref_s)
    _assert_close_grads(g, ref_g)
    with torch.no_grad():                                    # the inference path
        assert torch.equal(lif_fused(current, p, detach_reset=detach_reset), ref_s)


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("detach_reset", [True, False])
def test_constant_current_matches_reference(p, detach_reset):
    torch.manual_seed(1)
    current = torch.randn(16, 300) * 40 + 20
    steps = 37
    upstream = torch.randn(steps, 16, 300)
    ref_s, ref_g = _grad(lambda i: lif_simulate(i, p, steps, detach_reset=detach_reset)[0],
                         current, upstream)
    s, g = _grad(lambda i: encode_constant(i, p, steps, detach_reset=detach_reset), current,
                 upstream)
    assert ref_s.sum() > 100
    assert torch.equal(s, ref_s)
    _assert_close_grads(g, ref_g)


def _edge_currents(p: LIFParameters, steps: int) -> torch.Tensor:
    """Currents at and around the rheobase, and ones whose exact first spike or interval
    lands exactly on a step (where rounding decides), with their float32 neighbours."""
    beta = p.beta
    values = [0.0, -50.0, 1e4, 1e6, p.rheobase]
    for v0 in (p.v_init, p.v_reset):
        for k in range(1, min(steps, 60) + 1):
            ratio = beta ** -k
            v_inf = (p.v_th * ratio - v0) / (ratio - 1.0)
            if v_inf > p.v_th:
                values.append((v_inf - p.v_rest) / p.resistance)
    base = torch.tensor(values, dtype=torch.float32)
    out = [base]
    for _ in range(3):                                       # neighbours, a few ulps away
        out.append(torch.nextafter(out[-1], torch.tensor(math.inf)))
    lower = [base]
    for _ in range(3):
        lower.append(torch.nextafter(lower[-1], torch.tensor(-math.inf)))
    return torch.cat(out + lower[1:])


@pytest.mark.parametrize("p, steps", [
    (LIFParameters(), 25),
    (LIFParameters(), 200),
    (LIFParameters(tau_m=20.0, v_reset=-70.0, v_init=-60.0, dt=0.5), 100),
    (LIFParameters(tau_m=10.0, v_init=-45.0), 40),           # starts above threshold
    (LIFParameters(tau_m=10.0, dt=0.01), 300),
])
def test_closed_form_encoding_gives_the_stepped_spikes_on_edge_currents(p, steps):
    current = _edge_currents(p, steps)
    ref, _, _ = lif_simulate(current, p, steps)
    got = encode_constant(current, p, steps)
    assert closed_form_covers(p, True)
    assert ref.sum() > 0
    assert torch.equal(got, ref), torch.nonzero((got != ref).any(0)).flatten()


def test_closed_form_encoding_on_real_images_spikes_and_gradients():
    from lifnet.data import load_dataset, to_tensors
    data = load_dataset("mnist-5k")
    images, _ = to_tensors(data.train_images[:48], data.train_labels[:48])
    torch.manual_seed(0)
    enc = PatchEncoding((28, 28), 5, 1, channels=2, gain=60.0)
    p = LIFParameters()
    with torch.no_grad():
        current = enc(images)                                # (48, 1152) nA
    steps = 60
    upstream = torch.randn(steps, *current.shape)
    ref_s, ref_g = _grad(lambda i: lif_simulate(i, p, steps)[0], current, upstream)
    s, g = _grad(lambda i: encode_constant(i, p, steps), current, upstream)
    assert ref_s.sum() > 1000
    assert torch.equal(s, ref_s)
    _assert_close_grads(g, ref_g)


def test_uncovered_cases_fall_back_to_the_reference():
    p = LIFParameters(t_ref=2.5)
    assert not covers(p) and not covers(LIFParameters(), record_v=True)
    assert not closed_form_covers(LIFParameters(reset="subtract"), True)
    assert not closed_form_covers(LIFParameters(), False)
    torch.manual_seed(2)
    current = torch.randn(4, 50) * 40 + 20
    lif = LIF(p, fast=True)
    s, _ = lif(current, steps=30)
    assert torch.equal(s, lif_simulate(current, p, 30)[0])
    s, v = LIF(LIFParameters(), fast=True)(current, steps=30, record_v=True)
    ref_s, ref_v, _ = lif_simulate(current, LIFParameters(), 30, record_v=True)
    assert torch.equal(s, ref_s) and torch.equal(v, ref_v)


def _net(fast: bool, **updates):
    cfg = lifnet.preset_config("default").with_updates(
        {"network.steps": 20, "network.channels": 2, "network.fast": fast,
         "network.hidden": [30], **updates}).validate()
    torch.manual_seed(0)
    return lifnet.PatchNet(cfg), cfg


@pytest.mark.parametrize("updates", [{}, {"neuron.reset": "subtract"},
                                     {"neuron.detach_reset": False}])
def test_patchnet_fast_and_reference_agree(updates):
    fast, _ = _net(True, **updates)
    ref, _ = _net(False, **updates)
    ref.load_state_dict(fast.state_dict())
    assert fast.encoding_lif.fast and not ref.encoding_lif.fast
    with torch.no_grad():                       # large output weights, so outputs spike
        for net in (fast, ref):
            net.output.weight.mul_(4.0)
            net.hidden[0].weight.mul_(3.0)
    torch.manual_seed(3)
    images = torch.rand(8, 28, 28)
    labels = torch.arange(8) % 10
    outs = {}
    for name, net in (("fast", fast), ("ref", ref)):
        out = net(images)
        loss = torch.nn.functional.cross_entropy(out.spikes.sum(0), labels)
        loss.backward()
        outs[name] = (out, {k: v.grad.clone() for k, v in net.named_parameters()})
    (fo, fg), (ro, rg) = outs["fast"], outs["ref"]
    assert ro.spikes.sum() > 0 and ro.hidden[0].sum() > 0
    assert torch.equal(fo.spikes, ro.spikes)
    assert torch.equal(fo.encoding, ro.encoding)
    assert torch.equal(fo.hidden[0], ro.hidden[0])
    for k in rg:
        _assert_close_grads(fg[k], rg[k])


def test_config_switch_turns_the_fast_paths_off():
    cfg = lifnet.preset_config("default")
    assert cfg.network.fast is True
    off = cfg.with_updates({"network.fast": "false"}).validate()
    assert off.network.fast is False
    assert "fast = false" in off.to_toml()
    with pytest.raises(lifnet.ConfigError, match=r"network\.fast"):
        cfg.with_updates({"network.fast": "maybe"})


@pytest.mark.parametrize("surrogate, width", [("fast_sigmoid", 2.5), ("sigmoid", 1.0),
                                              ("arctan", 0.5), ("triangle", 3.0),
                                              ("gaussian", 1.5)])
def test_every_surrogate_gives_the_reference_gradient(surrogate, width):
    torch.manual_seed(4)
    p = LIFParameters(v_reset=-70.0)
    current = torch.randn(8, 200) * 40 + 20
    upstream = torch.randn(30, 8, 200)
    kw = {"surrogate": surrogate, "width": width}
    _, ref_g = _grad(lambda i: lif_simulate(i, p, 30, **kw)[0], current, upstream)
    _, g = _grad(lambda i: encode_constant(i, p, 30, **kw), current, upstream)
    _assert_close_grads(g, ref_g)
    _, ref_g = _grad(lambda i: lif_simulate(i.expand(30, 8, 200), p, **kw)[0], current,
                     upstream)
    _, g = _grad(lambda i: lif_fused(i.expand(30, 8, 200), p, **kw), current, upstream)
    _assert_close_grads(g, ref_g)


@pytest.mark.parametrize("h, w, k, s", [(28, 28, 5, 1), (28, 28, 5, 2), (13, 17, 3, 2),
                                        (10, 7, 4, 3), (9, 9, 9, 1)])
def test_one_channel_patch_synapses_match_unfold_and_einsum(h, w, k, s):
    torch.manual_seed(5)
    enc = PatchEncoding((h, w), k, s, channels=1, gain=3.0)
    with torch.no_grad():
        enc.bias.normal_()
    images = torch.rand(6, h, w)
    want = 3.0 * (torch.einsum("bpk,pck->bpc", enc.patches(images), enc.weight)
                  + enc.bias).flatten(1)
    got = enc(images)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(got)
    (gw,) = torch.autograd.grad((got * g).sum(), enc.weight)
    (ww,) = torch.autograd.grad((want * g).sum(), enc.weight)
    torch.testing.assert_close(gw, ww, rtol=1e-4, atol=1e-4)
