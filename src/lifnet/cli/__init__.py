"""The ``lifnet`` command line: the talking part of lifnet (progress bars, tables, files).

One module per command (``train.py``, ``evaluate.py``, ...), each with ``add_parser(sub)``
that declares its flags and ``run(args) -> int``; :data:`COMMANDS` lists them in the order
of ``lifnet --help``. Every error a user can cause is a :class:`~lifnet.errors.LifnetError`;
:func:`main` prints it as one line, ``lifnet: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

from .. import __version__
from ..errors import LifnetError
from .common import Parser

COMMANDS = ["train", "evaluate", "predict", "simulate", "config", "plot", "export"]


def make_parser() -> Parser:
    parser = Parser(prog="lifnet", description="Train spiking networks of leaky "
                    "integrate-and-fire neurons in biophysical units (mV, ms, MOhm, nF, nA).")
    parser.add_argument("--version", action="version", version=f"lifnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(sub).set_defaults(func=module.run)
    return parser


_PACKAGE = str(Path(__file__).resolve().parent.parent)


def main(argv: list[str] | None = None) -> int:
    # lifnet's own warnings as one line, as the command line talks; others' as they are
    previous = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        if str(filename).startswith(_PACKAGE):
            return f"lifnet: warning: {message}\n"
        return previous(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = previous


def _main(argv: list[str] | None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):      # a usage error: help to stderr, status 2
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except LifnetError as e:
        print(f"lifnet: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # a file the user named cannot be read or written (missing folder, no permission)
        where = f"{e.filename}: " if e.filename else ""
        print(f"lifnet: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "alloc" not in str(e):
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else "MemoryError"
        print(f"lifnet: error: out of memory: the configuration needs more memory than this "
              f"machine has (lower network.steps, network.channels, network.hidden or "
              f"training.batch_size): {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lifnet: interrupted", file=sys.stderr)
        return 130
