"""Unit tests are pure: any attempt to run a real command fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexvol.core import runner as run_module
from flexvol.core import state
from flexvol.core.config import Config


@pytest.fixture(autouse=True)
def _no_real_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unit test tried to run a real command: {args}")

    monkeypatch.setattr(run_module.os, "posix_spawn", refuse)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A data root of the test's own, its directories made (a module may define its own)."""
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config
