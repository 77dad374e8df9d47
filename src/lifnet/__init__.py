"""lifnet: spiking networks of leaky integrate-and-fire neurons in biophysical units.

Potentials in mV, time in ms, resistance in MOhm, capacitance in nF, current in nA.
Sequences are time-first, ``(T, batch, neurons)``.

Layout: :mod:`lifnet.neuron` (the physics), :mod:`lifnet.surrogate` (the spike and its
surrogate derivative), :mod:`lifnet.layers`, :mod:`lifnet.network` (PatchNet),
:mod:`lifnet.coding` (targets, losses, decoders), :mod:`lifnet.data`,
:mod:`lifnet.training`, :mod:`lifnet.checkpoint`, :mod:`lifnet.config` and
:mod:`lifnet.cli` (the command line).
"""

import logging

__version__ = "0.1.0"

from .coding import Coding
from .config import Config, preset_config
from .errors import CheckpointError, ConfigError, DataError, LifnetError
from .network import PatchNet
from .neuron import (
                     LIFParameters,
                     LIFState,
                     firing_rate,
                     first_spike_step,
                     initial_state,
                     interspike_steps,
                     lif_simulate,
                     lif_step,
                     spike_count,
                     stepped_rate,
)
from .surrogate import spike_fn
from .training import Trainer, build, evaluate, predict

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
                     "CheckpointError",
                     "Coding",
                     "Config",
                     "ConfigError",
                     "DataError",
                     "LIFParameters",
                     "LIFState",
                     "LifnetError",
                     "PatchNet",
                     "Trainer",
                     "build",
                     "evaluate",
                     "firing_rate",
                     "first_spike_step",
                     "initial_state",
                     "interspike_steps",
                     "lif_simulate",
                     "lif_step",
                     "predict",
                     "preset_config",
                     "spike_count",
                     "spike_fn",
                     "stepped_rate",
]
