"""Unit tests are pure: any attempt to run a real command fails the test."""

from __future__ import annotations

import pytest

from flexvol.core import runner as run_module


@pytest.fixture(autouse=True)
def _no_real_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unit test tried to run a real command: {args}")

    monkeypatch.setattr(run_module.os, "posix_spawn", refuse)
