"""``python -m lifnet`` (also what ``torchrun -m lifnet`` runs)."""

import sys

from .cli import main

sys.exit(main())
