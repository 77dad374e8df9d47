"""Configuration: one typed, validated tree of settings, read from TOML and ``--set``.

A configuration has five sections, each a dataclass: ``neuron`` (the LIF parameters shared
by every population, in mV, ms, MOhm, nF), ``network`` (the PatchNet architecture and the
time window), ``coding`` (targets, loss and decoding), ``training`` and ``data``. Keys are
written ``section.key`` on the command line (``--set neuron.v_th=-52``) and as TOML tables
in a file. Unknown keys, wrong types and values out of range raise :class:`ConfigError`
naming the key, the value and what is accepted.

Presets are named starting points (:data:`PRESETS`); a file or ``--set`` changes them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, bad_value
from .neuron import RESET_MODES, LIFParameters
from .surrogate import SURROGATES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def _key(unit: str, help: str, **kw) -> Any:
    """A dataclass field with its unit and meaning, for messages and ``lifnet config``."""
    default = kw.pop("default", dataclasses.MISSING)
    factory = kw.pop("default_factory", dataclasses.MISSING)
    return field(default=default, default_factory=factory,
                 metadata={"unit": unit, "help": help, **kw})


@dataclass
class NeuronConfig:
    resistance: float = _key("MOhm", "membrane resistance R", default=1.0, gt=0)
    capacitance: float | None = _key("nF", "membrane capacitance C (or give tau_m)",
                                     default=None, gt=0)
    tau_m: float | None = _key("ms", "membrane time constant R*C (or give capacitance)",
                               default=10.0, gt=0)
    v_rest: float = _key("mV", "resting potential", default=-65.0)
    v_reset: float | None = _key("mV", "reset potential (default: v_rest)", default=None)
    v_th: float = _key("mV", "firing threshold", default=-50.0)
    v_init: float | None = _key("mV", "potential at the start of a window (default: v_rest)",
                                default=None)
    t_ref: float = _key("ms", "refractory period", default=0.0, ge=0)
    reset: str = _key("", "reset mode", default="to_reset", choices=RESET_MODES)
    surrogate: str = _key("", "surrogate derivative of the spike", default="fast_sigmoid",
                          choices=tuple(SURROGATES))
    surrogate_width: float = _key("mV", "width of the surrogate derivative", default=1.0,
                                  gt=0)
    detach_reset: bool = _key("", "treat the reset as constant in the backward pass",
                              default=True)


@dataclass
class NetworkConfig:
    steps: int = _key("steps", "time window T, in steps of dt", default=15, ge=1,
                      le=100_000)
    dt: float = _key("ms", "time step", default=1.0, gt=0)
    patch_size: int = _key("px", "side k of the square patches", default=5, ge=1)
    patch_stride: int = _key("px", "stride between patches", default=1, ge=1)
    channels: int = _key("", "encoding neurons per patch", default=8, ge=1,
                         le=4096)
    encoding_gain: float = _key("nA", "current per unit of weighted pixel sum", default=60.0,
                                gt=0)
    encoding_init: float = _key("", "scale of the initial patch weights", default=1.0, gt=0)
    hidden: list = _key("neurons", "sizes of hidden dense LIF layers", default_factory=list,
                        item_ge=1, item_le=1_000_000)
    output_synapse: str = _key("", "output synapses", default="dense",
                               choices=("dense", "time_indexed", "time_indexed_integrated"))
    synapse_init: float = _key("nA", "scale of the initial dense and time-indexed weights",
                               default=150.0, gt=0)
    num_classes: int = _key("", "number of classes (output neurons)", default=10, ge=2)
    fast: bool = _key("", "run populations in the fused and closed-form fast paths (same "
                      "spikes; false: the stepped reference)", default=True)


@dataclass
class CodingConfig:
    scheme: str = _key("", "rate: most spikes wins; window: class c spikes in slot c",
                       default="rate", choices=("rate", "window"))
    loss: str = _key("", "rate coding: cross_entropy or mse_count; window coding: "
                     "error_energy (set with the scheme when not given)",
                     default="cross_entropy",
                     choices=("cross_entropy", "mse_count", "error_energy"))
    target_times: str = _key("", "window targets: regular or random spike times per slot",
                             default="regular", choices=("regular", "random"))
    target_spikes: int = _key("spikes", "window: spikes per target slot (random: at most)",
                              default=1, ge=1)
    target_seed: int = _key("", "seed of the random target times", default=0, ge=0)
    target_rate: float = _key("spikes", "mse_count: target count of the right class "
                              "(as a fraction of steps)", default=0.8, ge=0, le=1)
    count_scale: float = _key("", "cross_entropy: logits = count_scale * spike counts",
                              default=1.0, gt=0)


@dataclass
class TrainingConfig:
    optimizer: str = _key("", "sgd (the notebook's delta rule) or adam", default="adam",
                          choices=("sgd", "adam"))
    encoding_lr: float = _key("", "learning rate of the patch synapses (notebook ta_enc)",
                              default=0.01, gt=0)
    hidden_lr: float | None = _key("", "learning rate of hidden synapses (default output_lr)",
                                   default=None, gt=0)
    output_lr: float = _key("", "learning rate of the output synapses (notebook ta_mlp)",
                            default=0.05, gt=0)
    momentum: float = _key("", "sgd momentum", default=0.0, ge=0, lt=1)
    lr_decay: str = _key("", "learning-rate schedule over the epochs", default="cosine",
                         choices=("none", "cosine"))
    batch_size: int = _key("samples", "minibatch size", default=128, ge=1)
    max_epochs: int = _key("epochs", "stop after this many epochs", default=40, ge=1)
    min_err: float = _key("", "stop once the mean error energy per sample is below this",
                          default=0.0, ge=0)
    validation_fraction: float = _key("", "share of the training set held out for "
                                      "validation", default=0.1, ge=0, lt=1)
    seed: int = _key("", "seed of weights, shuffling and split", default=0, ge=0)
    shift: int = _key("px", "random translation of training images, up to this many pixels",
                      default=1, ge=0)


@dataclass
class DataConfig:
    dataset: str = _key("", "mnist-5k (embedded), mnist, fashion-mnist or folder:PATH",
                        default="mnist-5k")
    data_dir: str | None = _key("", "folder with the data set's files", default=None)
    train_limit: int | None = _key("samples", "use only the first N training samples",
                                   default=None, ge=1)
    test_limit: int | None = _key("samples", "use only the first N test samples",
                                  default=None, ge=1)
    image_size: int = _key("px", "side of the square images of a folder: data set (user "
                           "images are resized to it)", default=28, ge=4, le=1024)
    mirrors: str = _key("", "download mirrors of mnist and fashion-mnist, URLs with commas "
                        "between ({dataset} is replaced by the set's name); default "
                        "$LIFNET_MIRRORS", default="")


SECTIONS = {"neuron": NeuronConfig, "network": NetworkConfig, "coding": CodingConfig,
            "training": TrainingConfig, "data": DataConfig}


@dataclass
class Config:
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    coding: CodingConfig = field(default_factory=CodingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "default"

    # -- derived objects ---------------------------------------------------------------

    def lif_parameters(self) -> LIFParameters:
        """The neuron section as :class:`LIFParameters` (with the network's ``dt``)."""
        n = self.neuron
        return LIFParameters(resistance=n.resistance, capacitance=n.capacitance,
                             tau_m=n.tau_m, v_rest=n.v_rest, v_reset=n.v_reset, v_th=n.v_th,
                             v_init=n.v_init, t_ref=n.t_ref, dt=self.network.dt,
                             reset=n.reset)

    def validate(self) -> Config:
        """Check every value and the rules that join keys; raise ConfigError if any fails."""
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            for f in fields(cls):
                _check_value(f"{name}.{f.name}", getattr(section, f.name), f)
        self.lif_parameters()
        net, coding = self.network, self.coding
        if coding.scheme == "window":
            if coding.loss != "error_energy":
                raise bad_value("coding.loss", coding.loss,
                                "'error_energy' with coding.scheme = 'window'")
            if net.steps < net.num_classes:
                raise bad_value("network.steps", net.steps,
                                f">= network.num_classes = {net.num_classes} with window "
                                "coding (one slot of at least one step per class)")
            slot = net.steps // net.num_classes
            if coding.target_spikes > slot:
                raise bad_value("coding.target_spikes", coding.target_spikes,
                                f"<= the slot length, {slot} steps")
        elif coding.loss == "error_energy":
            raise bad_value("coding.loss", coding.loss,
                            "'cross_entropy' or 'mse_count' with coding.scheme = 'rate'")
        return self

    # -- (de)serialisation -----------------------------------------------------------

    def to_dict(self) -> dict:
        return {"preset": self.preset,
                **{name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}}

    def to_toml(self, comments: bool = True) -> str:
        """The whole configuration as TOML, each key with its unit and meaning."""
        lines = [f'preset = "{self.preset}"']
        for name, cls in SECTIONS.items():
            lines += ["", f"[{name}]"]
            section = getattr(self, name)
            for f in fields(cls):
                value = getattr(section, f.name)
                unit, help = f.metadata["unit"], f.metadata["help"]
                choices = f.metadata.get("choices")
                if choices and not all(str(c) in help for c in choices):
                    help = f"{help}: {' or '.join(map(str, choices))}"
                note = f"  # {help}" + (f" [{unit}]" if unit else "") if comments else ""
                if value is None:
                    lines.append(f"# {f.name} ={note}  (unset: default)")
                else:
                    lines.append(f"{f.name} = {_toml_value(value)}{note}")
        return "\n".join(lines) + "\n"

    def with_updates(self, updates: dict[str, Any], source: str = "--set") -> Config:
        """A copy with ``{"section.key": value}`` applied (values already typed or text)."""
        cfg = copy.deepcopy(self)
        # capacitance and tau_m are two ways to say one thing: giving one unsets the other
        keys = set(updates)
        if "neuron.capacitance" in keys and "neuron.tau_m" not in keys:
            cfg.neuron.tau_m = None
        if "neuron.tau_m" in keys and "neuron.capacitance" not in keys:
            cfg.neuron.capacitance = None
        # so does the coding scheme for its loss, unless the loss is given too
        if "coding.scheme" in keys and "coding.loss" not in keys:
            scheme = str(updates["coding.scheme"]).strip()
            if scheme == "window":
                cfg.coding.loss = "error_energy"
            elif scheme == "rate" and cfg.coding.loss == "error_energy":
                cfg.coding.loss = "cross_entropy"
        for dotted, value in updates.items():
            section_name, key, f = _lookup(dotted, source)
            section = getattr(cfg, section_name)
            setattr(section, key, _coerce(dotted, value, f))
        return cfg

    @classmethod
    def from_dict(cls, data: dict, source: str = "configuration",
                  base: Config | None = None) -> Config:
        """A configuration from nested tables; starts from ``base``, else the preset the
        data name, else the defaults."""
        data = dict(data)
        preset = data.pop("preset", None)
        if base is not None:
            cfg = base
        elif preset is not None:
            cfg = preset_config(preset)
        else:
            cfg = cls()
        updates = {}
        for section_name, values in data.items():
            if section_name not in SECTIONS:
                raise ConfigError(f"{source}: unknown section or key {section_name!r}: "
                                  f"accepted: preset, {', '.join(SECTIONS)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: {section_name} must be a table of keys")
            for key, value in values.items():
                updates[f"{section_name}.{key}"] = value
        return cfg.with_updates(updates, source)

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        return cls.from_dict(read_toml(path), source=str(path))


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file; ConfigError naming the file if it cannot be read."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e.strerror}")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not a valid TOML file: {e}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _lookup(dotted: str, source: str):
    section_name, _, key = dotted.partition(".")
    if section_name in SECTIONS and key:
        for f in fields(SECTIONS[section_name]):
            if f.name == key:
                return section_name, key, f
    known = ", ".join(f"{s}.{f.name}" for s, c in SECTIONS.items() for f in fields(c))
    raise ConfigError(f"{source}: unknown key {dotted!r}: accepted: {known}")


def _base_type(f) -> type:
    hint = f.type if not isinstance(f.type, str) else None
    text = hint.__name__ if hint is not None else f.type
    for t in (bool, int, float, list, str):
        if text.startswith(t.__name__):
            return t
    raise TypeError(f"unsupported field type {f.type}")  # a bug in this module


def _coerce(dotted: str, value: Any, f) -> Any:
    """Turn ``value`` (typed, or the text after ``=``) into the field's type."""
    kind = _base_type(f)
    optional = "None" in str(f.type)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if optional and text.lower() in ("none", ""):
            return None
        if kind is list:
            text = text.strip("[]")
            value = [v for v in (x.strip() for x in text.split(",")) if v]
        elif kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise bad_value(dotted, value, "true or false", problem="is not valid")
            return text.lower() in ("true", "1")
        else:
            try:
                value = kind(text) if kind is float else int(text, 10)
            except ValueError:
                raise bad_value(dotted, value, f"{'a number' if kind is float else 'an integer'}"
                                + (f" in {f.metadata['unit']}" if f.metadata["unit"] else ""),
                                problem="is not valid")
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise bad_value(dotted, value if abs(value) < 10 ** 30 else "a number of "
                            f"{len(str(abs(value)))} digits", "a finite number")
    if kind is list:
        if not isinstance(value, list):
            raise bad_value(dotted, value, "a list of integers, e.g. [128] or 128,64",
                            problem="is not valid")
        out = []
        for v in value:
            try:
                out.append(int(v, 10) if isinstance(v, str) else v)
            except ValueError:
                raise bad_value(dotted, value, "a list of integers, e.g. [128] or 128,64",
                            problem="is not valid")
            if not isinstance(out[-1], int) or isinstance(out[-1], bool):
                raise bad_value(dotted, value, "a list of integers, e.g. [128] or 128,64",
                            problem="is not valid")
        value = out
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad_value(dotted, value, f"a value of type {kind.__name__}")
    _check_value(dotted, value, f)
    return value


def _check_value(dotted: str, value: Any, f) -> None:
    meta, unit = f.metadata, f.metadata.get("unit", "")
    if value is None:
        return
    suffix = f" {unit}" if unit and unit not in ("", "steps", "samples", "epochs") else ""
    if "choices" in meta and value not in meta["choices"]:
        raise bad_value(dotted, value, " or ".join(map(repr, meta["choices"])),
                        problem="is not valid")
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_value(dotted, value, "a finite number")
    for op, test, _word in (("gt", lambda a, b: a > b, ">"), ("ge", lambda a, b: a >= b, ">="),
                           ("lt", lambda a, b: a < b, "<"), ("le", lambda a, b: a <= b, "<=")):
        if op in meta and not test(value, meta[op]):
            bounds = [f"{w} {meta[o]}" for o, w in (("gt", ">"), ("ge", ">="), ("lt", "<"),
                                                    ("le", "<=")) if o in meta]
            raise bad_value(dotted, value, " and ".join(bounds) + suffix)
    if "item_ge" in meta:
        for v in value:
            if not meta["item_ge"] <= v <= meta.get("item_le", v):
                raise bad_value(dotted, value, f"every size from {meta['item_ge']} to "
                                f"{meta.get('item_le', 'any')}")


# -- presets ---------------------------------------------------------------------------


def _default() -> Config:
    """Tuned to train best on mnist-5k; the README says why each choice."""
    return Config(preset="default")


def _notebook() -> Config:
    """The notebook's network, made right (design sections 2 and 3).

    Fixed by the notebook: 100 steps of 1 ms, 5 x 5 patches with stride 1, one encoding
    neuron per patch, ``time_indexed`` output synapses, window coding with the error energy,
    one learning rate per layer, R = 1 MOhm, tau = 10 ms, rest -65 mV, threshold -50 mV.
    Chosen by lifnet (the notebook leaves them open or gets them wrong): a current gain of
    200 nA, so that enough encoding neurons spike in every slot; 5 regular target spikes per
    10-step slot (the notebook drew 0 to 9); a 5 mV surrogate width, so that a silent output
    neuron 15 mV below threshold still feels its error; Adam with a cosine schedule, because
    plain gradient descent (the notebook's delta rule, ``--set training.optimizer=sgd``)
    learns too slowly to reach the accuracy bar in the time allowed (README, "Presets").
    Every key is set here explicitly, so a change of the defaults never changes this preset.
    """
    cfg = Config(preset="notebook")
    cfg.neuron = NeuronConfig(resistance=1.0, tau_m=10.0, capacitance=None, v_rest=-65.0,
                              v_reset=None, v_th=-50.0, v_init=None, t_ref=0.0,
                              reset="to_reset", surrogate="fast_sigmoid", surrogate_width=5.0)
    cfg.network = NetworkConfig(steps=100, dt=1.0, patch_size=5, patch_stride=1, channels=1,
                                encoding_gain=200.0, encoding_init=1.0, hidden=[],
                                output_synapse="time_indexed", synapse_init=150.0,
                                num_classes=10)
    cfg.coding = CodingConfig(scheme="window", loss="error_energy", target_times="regular",
                              target_spikes=5)
    cfg.training = TrainingConfig(optimizer="adam", encoding_lr=0.01, output_lr=0.05,
                                  momentum=0.0, lr_decay="cosine", batch_size=128, shift=0,
                                  max_epochs=25, validation_fraction=0.1)
    return cfg


PRESETS = {"default": _default, "notebook": _notebook}


def preset_config(name: str) -> Config:
    if name not in PRESETS:
        raise bad_value("preset", name, " or ".join(map(repr, PRESETS)), problem="is not valid")
    return PRESETS[name]()


def parse_set(items: list[str]) -> dict[str, str]:
    """``["neuron.v_th=-52", ...]`` to ``{"neuron.v_th": "-52"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: accepted: KEY=VALUE, e.g. neuron.v_th=-52")
        out[key.strip()] = value
    return out
