"""The fast paths (lifnet.fast) against the stepped reference (lif_simulate).

Spikes must be identical; gradients equal to float tolerance. Every test runs twice: with
the CPU kernels (lifnet._kernels) and with them switched off, so that the PyTorch loops and
the closed form, which run where no kernel can (a GPU), are held to the same.
"""

import math

import pytest
import torch

import lifnet
from lifnet import fast as fast_mod
from lifnet.fast import (
    closed_form_covers,
    covers,
    encode_constant,
    encode_dense,
    encode_dense_covers,
    lif_fused,
)
from lifnet.layers import LIF, PatchEncoding
from lifnet.neuron import LIFParameters, lif_simulate


@pytest.fixture(autouse=True, params=["kernels", "pytorch"])
def paths(request, monkeypatch):
    """Run with the numba kernels, then with the PyTorch loops and closed form only."""
    if request.param == "pytorch":
        monkeypatch.setitem(fast_mod._STATE, "kernels", False)
    else:
        assert fast_mod._load_kernels() is not None, "numba is a dependency: install it"
    return request.param


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
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("fast", [False, True])
def test_patch_synapses_match_unfold_and_einsum(h, w, k, s, channels, fast):
    torch.manual_seed(5)
    enc = PatchEncoding((h, w), k, s, channels=channels, gain=3.0, fast=fast)
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


@pytest.mark.parametrize("h, w, k, s, channels", [(28, 28, 5, 1, 1), (28, 28, 5, 1, 8),
                                                  (28, 28, 5, 2, 3), (13, 17, 3, 2, 2),
                                                  (10, 7, 4, 3, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_patch_kernel_gives_the_pytorch_currents_bit_for_bit(h, w, k, s, channels, dtype,
                                                              paths):
    torch.manual_seed(6)
    ref = PatchEncoding((h, w), k, s, channels, gain=60.0).to(dtype)
    fast = PatchEncoding((h, w), k, s, channels, gain=60.0, fast=True).to(dtype)
    with torch.no_grad():
        ref.bias.normal_()
    fast.load_state_dict(ref.state_dict())
    images = torch.rand(9, h, w, dtype=dtype)
    want, got = ref(images), fast(images)
    assert torch.equal(got, want)        # the same operations in the same order
    g = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad((got * g).sum(), (fast.weight, fast.bias)),
                    torch.autograd.grad((want * g).sum(), (ref.weight, ref.bias))):
        _assert_close_grads(a, b)


COVERED = [LIFParameters(), LIFParameters(tau_m=20.0, v_reset=-70.0, v_init=-60.0, dt=0.5),
           LIFParameters(tau_m=5.0, v_reset=-55.0, v_init=-75.0, dt=0.5)]


@pytest.mark.parametrize("p", COVERED)
@pytest.mark.parametrize("surrogate, width", [("fast_sigmoid", 1.0), ("sigmoid", 2.0),
                                              ("arctan", 0.5), ("triangle", 3.0),
                                              ("gaussian", 1.5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encoding_fused_with_dense_synapses_matches_the_two_layers(p, surrogate, width,
                                                                   dtype, paths):
    torch.manual_seed(7)
    steps, batch, n_in, k = 40, 12, 90, 7
    current = (torch.randn(batch, n_in) * 30 + 25).to(dtype)
    weight = (torch.randn(k, n_in) * 20).to(dtype).requires_grad_()
    bias = torch.randn(k, dtype=dtype).requires_grad_()
    assert encode_dense_covers(current, p, True, surrogate) == (paths == "kernels")
    upstream = torch.randn(steps, batch, k, dtype=dtype)
    kw = {"surrogate": surrogate, "width": width}

    def ref(i):
        spikes = lif_simulate(i, p, steps, **kw)[0]
        return torch.nn.functional.linear(spikes, weight, bias)

    def got(i):
        return encode_dense(i, weight, bias, p, steps, **kw)

    outs, grads = [], []
    for fn in (ref, got):
        i = current.clone().requires_grad_()
        out = fn(i)
        outs.append(out.detach())
        grads.append(torch.autograd.grad((out * upstream).sum(), (i, weight, bias)))
    (want, got_out), ((ri, rw, rb), (gi, gw, gb)) = outs, grads
    assert (lif_simulate(current, p, steps)[0].sum()) > 200         # spikes to sum
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got_out, want, rtol=tol, atol=tol * want.abs().max())
    for a, b in ((gi, ri), (gw, rw), (gb, rb)):
        _assert_close_grads(a, b)
    with torch.no_grad():                                            # inference
        torch.testing.assert_close(got(current), want, rtol=tol, atol=tol * want.abs().max())


def test_encode_dense_falls_back_where_the_neuron_is_not_covered():
    p = LIFParameters(reset="subtract")
    torch.manual_seed(8)
    current = torch.randn(5, 30) * 30 + 25
    weight, bias = torch.randn(4, 30), torch.randn(4)
    assert not encode_dense_covers(current, p, True, "fast_sigmoid")
    want = torch.nn.functional.linear(lif_simulate(current, p, 20)[0], weight, bias)
    torch.testing.assert_close(encode_dense(current, weight, bias, p, 20), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_patchnet_without_hidden_layer_fused_and_reference_agree(dtype, paths):
    """The default network (no hidden layer, dense output): the fused encoding and
    output synapses against every layer stepped by the reference."""
    cfg = lifnet.preset_config("default").with_updates({"network.steps": 30})
    nets = {}
    for fast in (True, False):
        torch.manual_seed(0)
        nets[fast] = lifnet.PatchNet(cfg.with_updates({"network.fast": fast}).validate())
        nets[fast].to(dtype)
        with torch.no_grad():
            nets[fast].output.weight.mul_(3.0)
    torch.manual_seed(3)
    images = torch.rand(16, 28, 28, dtype=dtype)
    labels = torch.arange(16) % 10
    res = {}
    for fast, net in nets.items():
        out = net(images)
        assert (out.encoding is None) == (fast and paths == "kernels")
        torch.nn.functional.cross_entropy(out.spikes.sum(0), labels).backward()
        res[fast] = (out.spikes, {k: v.grad for k, v in net.named_parameters()})
    assert res[False][0].sum() > 20
    assert torch.equal(res[True][0], res[False][0])
    for k, g in res[False][1].items():
        _assert_close_grads(res[True][1][k], g)
    with torch.no_grad():
        assert torch.equal(nets[True](images).spikes, res[False][0])
        assert nets[True](images, record_v=True).encoding is not None


def test_kernels_that_cannot_load_leave_the_pytorch_paths_with_a_warning(monkeypatch):
    import sys
    monkeypatch.setitem(fast_mod._STATE, "kernels", None)
    monkeypatch.delattr(lifnet, "_kernels", raising=False)
    monkeypatch.setitem(sys.modules, "lifnet._kernels", None)     # the import fails
    with pytest.warns(RuntimeWarning, match="PyTorch fast paths run instead"):
        assert fast_mod._load_kernels() is None
    assert fast_mod._load_kernels() is None                       # asked once, not again
    p = LIFParameters()
    current = torch.randn(4, 20) * 30 + 25
    assert torch.equal(encode_constant(current, p, 20), lif_simulate(current, p, 20)[0])
