"""The reference patch network in lifnet, snnTorch and Norse, with the same weights.

Shared by ``bench_train.py`` and ``bench_steps.py``. The network: 28 x 28 images, 5 x 5
patches with stride 1, locally connected patch synapses (lifnet's ``PatchEncoding``, the
same module in every contender, so only the neurons differ), an encoding LIF population
under the constant patch current, dense synapses to 10 output LIF neurons, cross-entropy of
the spike counts, Adam.

The neuron of the default preset (R = 1 MOhm, tau_m = 10 ms, v_rest = v_reset = -65 mV,
v_th = -50 mV, dt = 1 ms, reset to v_reset, detached reset) maps exactly onto

- snnTorch ``Leaky(beta, threshold=v_th - v_rest, reset_mechanism="zero")`` with the membrane
  counted from ``v_rest`` and input ``(1 - beta) R I`` (``mem = beta mem + input``, the reset
  to zero applied at the next step, as snnTorch does it);
- Norse ``LIFBoxCell`` (LIF without synaptic current) with ``dt * tau_mem_inv = 1 - beta``,
  so that its Euler step ``v + dt/tau (v_leak - v + R I)`` is the exact integrator of lifnet.

The three compute the same real numbers in different orders, so a spike exactly at
threshold may differ by rounding; the benchmarks print how many output spikes agree.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

import lifnet
from lifnet.layers import PatchEncoding


def lifnet_config(steps: int, channels: int, fast: bool = True):
    return lifnet.preset_config("default").with_updates(
        {"network.steps": steps, "network.channels": channels, "network.fast": fast,
         "training.shift": 0}).validate()


class LifnetNet(nn.Module):
    """lifnet's PatchNet (fast paths on or off); forward gives output spikes (T, B, K)."""

    def __init__(self, steps: int, channels: int, fast: bool = True) -> None:
        super().__init__()
        cfg = lifnet_config(steps, channels, fast)
        torch.manual_seed(0)
        self.net, self.coding = lifnet.build(cfg, (28, 28))
        self.encoding, self.output = self.net.encoding, self.net.output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).spikes


def _neuron(steps: int, channels: int):
    return lifnet_config(steps, channels).lif_parameters()


class SnnTorchNet(nn.Module):
    """The same network from snnTorch's ``Leaky``, stepped in a loop as its tutorials do."""

    def __init__(self, steps: int, channels: int) -> None:
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        p = _neuron(steps, channels)
        self.steps = steps
        self.scale = (1.0 - p.beta) * p.resistance          # nA -> mV per step
        self.encoding = PatchEncoding((28, 28), 5, 1, channels, 60.0)
        self.output = nn.Linear(self.encoding.out_features, 10)
        grad = surrogate.fast_sigmoid(slope=1.0)
        kw = {"beta": p.beta, "threshold": p.v_th - p.v_rest, "spike_grad": grad,
              "reset_mechanism": "zero"}
        self.lif1, self.lif2 = snn.Leaky(**kw), snn.Leaky(**kw)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cur1 = self.encoding(images) * self.scale
        mem1 = self.lif1.reset_mem()
        mem2 = self.lif2.reset_mem()
        out = []
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.output(spk1) * self.scale
            spk2, mem2 = self.lif2(cur2, mem2)
            out.append(spk2)
        return torch.stack(out)


class NorseNet(nn.Module):
    """The same network from Norse's ``LIFBoxCell``, stepped in a loop."""

    def __init__(self, steps: int, channels: int) -> None:
        super().__init__()
        from norse.torch import LIFBoxCell, LIFBoxParameters

        p = _neuron(steps, channels)
        self.steps = steps
        self.encoding = PatchEncoding((28, 28), 5, 1, channels, 60.0)
        self.output = nn.Linear(self.encoding.out_features, 10)
        np_ = LIFBoxParameters(
            tau_mem_inv=torch.as_tensor((1.0 - p.beta) / p.dt), v_leak=torch.as_tensor(p.v_rest),
            v_th=torch.as_tensor(p.v_th), v_reset=torch.as_tensor(p.v_reset), method="super",
            alpha=torch.as_tensor(1.0))
        self.cell1, self.cell2 = LIFBoxCell(np_, dt=p.dt), LIFBoxCell(np_, dt=p.dt)
        self.resistance = p.resistance

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cur1 = self.encoding(images) * self.resistance
        s1 = s2 = None
        out = []
        for _ in range(self.steps):
            z1, s1 = self.cell1(cur1, s1)
            z2, s2 = self.cell2(self.output(z1) * self.resistance, s2)
            out.append(z2)
        return torch.stack(out)


def copy_weights(src: LifnetNet, dst: nn.Module) -> None:
    """Give ``dst`` lifnet's weights (patch synapses and output synapses)."""
    with torch.no_grad():
        dst.encoding.load_state_dict(src.encoding.state_dict())
        dst.output.weight.copy_(src.output.weight)
        dst.output.bias.copy_(src.output.bias)


_PRETRAINED: dict = {}


def build(name: str, steps: int, channels: int, pretrain: int = 20) -> nn.Module:
    """``lifnet`` (fast paths), ``lifnet-ref`` (stepped reference), ``snntorch``, ``norse``;
    every one with the weights of ``LifnetNet(steps, channels)`` after ``pretrain`` Adam
    steps on the benchmark batch (at their initial weights the output neurons are still
    silent, which would make the spike check empty)."""
    base = LifnetNet(steps, channels, fast=True)
    key = (steps, channels, pretrain)
    if key not in _PRETRAINED:
        if pretrain:
            x, y = batch(128)
            opt = make_optimizer(base)
            for _ in range(pretrain):
                train_step(base, opt, x, y)
        _PRETRAINED[key] = {k: v.clone() for k, v in base.state_dict().items()}
    base.load_state_dict(_PRETRAINED[key])
    if name == "lifnet":
        return base
    if name == "lifnet-ref":
        net = LifnetNet(steps, channels, fast=False)
    elif name == "snntorch":
        net = SnnTorchNet(steps, channels)
    elif name == "norse":
        net = NorseNet(steps, channels)
    else:
        raise ValueError(name)
    if name != "lifnet-ref":
        copy_weights(base, net)
    else:
        net.load_state_dict(base.state_dict())
    return net


def loss_fn(spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the spike counts (lifnet's rate coding, count_scale 1)."""
    return F.cross_entropy(spikes.sum(0), labels)


def make_optimizer(net: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=0.01)


def train_step(net, opt, images, labels) -> None:
    loss = loss_fn(net(images), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def batch(batch_size: int, seed: int = 0):
    """A batch of mnist-5k training images ``(B, 28, 28)`` and labels."""
    from lifnet.data import load_dataset, to_tensors
    data = load_dataset("mnist-5k")
    reps = math.ceil(batch_size / len(data.train_labels))
    x, y = to_tensors(data.train_images, data.train_labels)
    x, y = x.repeat(reps, 1, 1)[:batch_size], y.repeat(reps)[:batch_size]
    return x, y


def training_flops(steps: int, channels: int, batch_size: int) -> dict[str, float]:
    """Floating-point operations of one training step of the network (multiply-adds
    count 2), by part. Elementwise neuron work is counted as the stepped update needs it."""
    p_, k2, k = 576, 25, 10
    n = p_ * channels
    t, b = steps, batch_size
    return {
        "patch synapses fwd+bwd (weights only)": 2 * b * n * k2 * 2,
        "output synapses fwd (T*B*N*K MACs)": 2 * t * b * n * k,
        "output synapses bwd (weights + inputs)": 2 * 2 * t * b * n * k,
        "encoding neurons fwd+bwd (~10 + ~10 ops per neuron-step)": 20 * t * b * n,
    }
