"""Shared test fixtures.

``agreement``: comparison tests (lifnet against Brian2, snnTorch, the closed form) report how
many cases they compared and how many they skipped, and why; the lines are printed in the
terminal summary of every run, so the figures are in the test output without ``-s``.
"""

from __future__ import annotations

import pytest

_AGREEMENT: list[str] = []


@pytest.fixture
def agreement():
    """Call ``agreement("...")`` to add one line to the run's agreement summary."""
    return _AGREEMENT.append


def pytest_terminal_summary(terminalreporter):
    if _AGREEMENT:
        terminalreporter.section("agreement")
        for line in _AGREEMENT:
            terminalreporter.write_line(line)
