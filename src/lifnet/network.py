"""PatchNet, the reference network (design section 2).

::

    image (B, H, W), pixels in [0, 1]
      -> PatchEncoding: one neuron per patch and channel, constant current (B, N_enc) nA
      -> LIF encoding population over T steps              spikes (T, B, N_enc)
      -> [DenseSynapse -> LIF] for each hidden layer       spikes (T, B, N_h)
      -> output synapses (dense | time_indexed | time_indexed_integrated)
      -> LIF output population, one neuron per class       spikes (T, B, K)

Every population uses the same :class:`~lifnet.neuron.LIFParameters`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import Config
from .fast import encode_dense, encode_dense_covers
from .layers import (
    LIF,
    DenseSynapse,
    PatchEncoding,
    TimeIndexedIntegratedSynapse,
    TimeIndexedSynapse,
)


def _full(current: torch.Tensor) -> torch.Tensor:
    """Currents from bf16/fp16 autocast back to float32 (float64 stays float64)."""
    return current.float() if current.dtype in (torch.bfloat16, torch.float16) else current


class NetOutput(NamedTuple):
    """What one forward pass gives. Spike trains are ``(T, B, N)``.

    ``hidden`` is always returned. ``encoding`` is None where the encoding population ran
    fused with the output synapses (:func:`lifnet.fast.encode_dense`: fast paths on, no
    hidden layer, dense output synapses, a CPU), which never builds its spike trains; with
    ``record_v=True`` every population runs on its own and ``encoding`` is always there,
    as is ``v_out``, the output membrane trace in mV.
    """

    spikes: torch.Tensor
    encoding: torch.Tensor | None
    hidden: list[torch.Tensor]
    v_out: torch.Tensor | None = None


class PatchNet(nn.Module):
    """The reference patch network, built from a :class:`~lifnet.config.Config`.

    Parameters
    ----------
    cfg : Config
        Validated configuration; ``network`` and ``neuron`` sections are used.
    image_size : (H, W)
        Size of the input images in pixels.
    """

    def __init__(self, cfg: Config, image_size: tuple[int, int] = (28, 28)) -> None:
        super().__init__()
        net, neuron = cfg.network, cfg.neuron
        self.steps, self.num_classes = net.steps, net.num_classes
        self.image_size = tuple(image_size)
        params = cfg.lif_parameters()
        lif_kw = {"surrogate": neuron.surrogate, "surrogate_width": neuron.surrogate_width,
                      "detach_reset": neuron.detach_reset, "fast": net.fast}

        self.encoding = PatchEncoding(self.image_size, net.patch_size, net.patch_stride,
                                      net.channels, net.encoding_gain, net.encoding_init,
                                      fast=net.fast)
        self.encoding_lif = LIF(params, **lif_kw)

        width = self.encoding.out_features
        self.hidden = nn.ModuleList()
        for size in net.hidden:
            self.hidden.append(DenseSynapse(width, size, weight_scale=net.synapse_init))
            width = size
        self.hidden_lif = LIF(params, **lif_kw)

        k = net.num_classes
        if net.output_synapse == "dense":
            self.output = DenseSynapse(width, k, weight_scale=net.synapse_init)
        elif net.output_synapse == "time_indexed":
            self.output = TimeIndexedSynapse(width, k, net.steps, weight_scale=net.synapse_init)
        else:
            self.output = TimeIndexedIntegratedSynapse(width, k, net.steps,
                                                       weight_scale=net.synapse_init)
        self.output_lif = LIF(params, **lif_kw)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by layer, for one learning rate per layer."""
        return {"encoding": list(self.encoding.parameters()),
                "hidden": list(self.hidden.parameters()),
                "output": list(self.output.parameters())}

    def _fuses(self, current: torch.Tensor) -> bool:
        """Whether the encoding population runs fused with the output synapses."""
        lif = self.encoding_lif
        return (lif.fast and not self.hidden and type(self.output) is DenseSynapse
                and encode_dense_covers(current, lif.params, lif.detach_reset, lif.surrogate))

    def forward(self, images: torch.Tensor, record_v: bool = False) -> NetOutput:
        """``(B, H, W)`` images in [0, 1] to output spikes ``(T, B, K)`` and the rest."""
        # synapses may run in bf16 under autocast; membranes always integrate in float32
        current = _full(self.encoding(images))                          # (B, N_enc) nA
        if not record_v and self._fuses(current):
            # encoding population and output synapses in one (no (T, B, N_enc) trains)
            lif = self.encoding_lif
            current = encode_dense(current, self.output.weight, self.output.bias, lif.params,
                                   self.steps, lif.surrogate, lif.surrogate_width,
                                   lif.detach_reset)                    # (T, B, K)
            out, _ = self.output_lif(current)
            return NetOutput(out, None, [])
        enc, _ = self.encoding_lif(current, steps=self.steps)           # (T, B, N_enc)
        x, hidden = enc, []
        for synapse in self.hidden:
            x, _ = self.hidden_lif(_full(synapse(x)))                   # (T, B, N_h)
            hidden.append(x)
        current = _full(self.output(x))   # (T, B, K), or (B, K) when integrated
        constant = current.dim() == 2
        out, v = self.output_lif(current, steps=self.steps if constant else None,
                                 record_v=record_v)
        return NetOutput(out, enc, hidden, v)
