"""The project's own error types.

Every error that a user can cause (a configuration value out of range, a data file that is
not whole, a checkpoint that does not match) is a :class:`LifnetError`. The command line
turns these into one line on standard error and exit status 2; anything else is a bug.
"""

from __future__ import annotations


class LifnetError(Exception):
    """Base class of the errors that a user's input can cause."""


class ConfigError(LifnetError, ValueError):
    """A parameter or configuration value is unknown, of the wrong type or out of range."""


class DataError(LifnetError):
    """A data set or an image is missing, truncated or malformed."""


class CheckpointError(LifnetError):
    """A checkpoint or run folder is missing, truncated or does not match the network."""


class NonFiniteLossError(LifnetError):
    """Training met a loss that is NaN or infinite (the message names epoch and batch)."""


def bad_value(name: str, value: object, accepted: str, owner: str | None = None,
              problem: str = "is out of range") -> ConfigError:
    """Build the one-line error used for every value out of range (or of the wrong kind:
    ``problem="is not valid"``).

    The message names the parameter (and its owner), the value received and what would be
    accepted, e.g. ``neuron.capacitance = -1.0 is out of range: accepted: > 0 nF``.
    """
    where = f"{owner}.{name}" if owner else name
    return ConfigError(f"{where} = {value!r} {problem}: accepted: {accepted}")
