"""Prometheus metrics from records and the call journal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.journal import Follower as JournalFollower
from flexvol.provisioning.metrics import registry_for

MiB = 1 << 20


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config


def journal(config: Config, *entries: tuple[str, str, float], partial: str = "") -> None:
    with open(config.journal_path, "a") as handle:
        for verb, status, ms in entries:
            handle.write(json.dumps({"verb": verb, "status": status, "ms": ms}) + "\n")
        handle.write(partial)


def scrape(registry) -> dict[str, float]:
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_calls_are_counted_once_per_journal_line_with_latency(config: Config) -> None:
    registry = registry_for(config)
    journal(config, ("mount", "Success", 120.0), ("mount", "Failure", 3.0), ("init", "Success", 2.0),
            partial='{"verb": "mount", "sta')
    first = scrape(registry)
    assert first['flexvol_driver_calls_total{status="Success",verb="mount"}'] == 1
    assert first['flexvol_driver_calls_total{status="Failure",verb="mount"}'] == 1
    assert first['flexvol_driver_call_duration_seconds_bucket{le="0.1",verb="mount"}'] == 1
    assert first['flexvol_driver_call_duration_seconds_bucket{le="0.25",verb="mount"}'] == 2
    assert first['flexvol_driver_call_duration_seconds_count{verb="mount"}'] == 2
    assert first['flexvol_driver_call_duration_seconds_sum{verb="mount"}'] == pytest.approx(0.123)
    # the half-written line completes; a second scrape counts it and nothing twice
    with open(config.journal_path, "a") as handle:
        handle.write('tus": "Success", "ms": 50}\n')
    second = scrape(registry)
    assert second['flexvol_driver_calls_total{status="Success",verb="mount"}'] == 2
    assert second['flexvol_driver_calls_total{status="Success",verb="init"}'] == 1


def test_rotation_loses_no_line(config: Config) -> None:
    follower = JournalFollower(config.journal_path)
    journal(config, ("mount", "Success", 1.0))
    assert len(follower.new_entries()) == 1
    journal(config, ("unmount", "Success", 1.0))
    os.replace(config.journal_path, config.journal_path + ".1")  # as journal.append rotates
    journal(config, ("init", "Success", 1.0))
    assert [entry["verb"] for entry in follower.new_entries()] == ["unmount", "init"]
    assert follower.new_entries() == []


def test_volume_gauges(config: Config) -> None:
    state.save_record(config, state.new_record("v1", 64 * MiB, "ext4"))
    with open(config.backing_file("v1"), "wb") as handle:
        handle.truncate(64 * MiB)
        handle.write(b"x" * MiB)
    values = scrape(registry_for(config))
    assert values['flexvol_volume_size_bytes{volume="v1"}'] == 64 * MiB
    assert MiB <= values['flexvol_volume_allocated_bytes{volume="v1"}'] < 64 * MiB
    assert values['flexvol_volume_mounted{volume="v1"}'] == 0


def test_the_toolkits_actions_are_not_counted_as_driver_calls(config: Config) -> None:
    journal(config, ("toolkit:create", "Success", 900.0), ("mount", "Success", 10.0))
    values = scrape(registry_for(config))
    assert values['flexvol_driver_calls_total{status="Success",verb="mount"}'] == 1
    assert not any("toolkit" in name for name in values)


def test_pool_gauges_warn_before_the_pool_runs_out(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression, "the capacity budget counts the pool's size, not its free space": no figure
    showed a pool running out under its thin volumes."""
    from flexvol.core import budget

    monkeypatch.setattr(budget, "measure", lambda config: budget.Pool(
        "/p", 100 * MiB, 20 * MiB, 1.0, {"thin": (50 * MiB, 10 * MiB)}))
    values = scrape(registry_for(config))
    assert values["flexvol_pool_size_bytes"] == 100 * MiB
    assert values["flexvol_pool_free_bytes"] == 20 * MiB
    assert values["flexvol_pool_promised_bytes"] == 40 * MiB
    assert values["flexvol_pool_unbacked_bytes"] == 20 * MiB
    assert values["flexvol_pool_available_bytes"] == 0
    assert values["flexvol_pool_low"] == 1
