"""Block statistics of loop devices: parsing /sys/block/<dev>/stat, rates, and their metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from flexvol.core.blockstat import BlockStat, parse_stat, rates, read_stat, volume_stat
from flexvol.provisioning.metrics import io_metrics
from flexvol.toolkit.volumeio import Sample, VolumeIO, between

# Captured from /sys/block/loop0/stat on kernel 6.1 (17 fields: discard and flush too).
CAPTURED = ("  220966     2247  9792318    39026    90587   172801 37033583    55820        0    55076"
            "   115363        0        0        0        0    44384    20517\n")
# An older kernel's 11 fields.
OLD_KERNEL = ("     100        0      800       50      200        0     1600      400        2"
              "      300      450\n")


def test_parse_the_captured_stat_line() -> None:
    stat = parse_stat(CAPTURED)
    assert stat == BlockStat(reads=220966, read_sectors=9792318, read_ms=39026, writes=90587,
                             write_sectors=37033583, write_ms=55820, in_flight=0, io_ms=55076,
                             queue_ms=115363)
    assert stat.read_bytes == 9792318 * 512 and stat.write_bytes == 37033583 * 512
    assert parse_stat(OLD_KERNEL).in_flight == 2


@pytest.mark.parametrize("text", ["", "1 2 3", "a b c d e f g h i j k"])
def test_a_line_that_is_not_a_stat_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stat(text)


def test_rates_over_an_interval() -> None:
    before = parse_stat(OLD_KERNEL)
    after = BlockStat(reads=110, read_sectors=880, read_ms=70, writes=240, write_sectors=9792, write_ms=480,
                      in_flight=3, io_ms=800, queue_ms=1450)
    found = rates(before, after, 2.0)
    assert found.read_iops == 5 and found.write_iops == 20
    assert found.read_bytes_per_s == 80 * 512 / 2 and found.write_bytes_per_s == 8192 * 512 / 2
    assert found.read_latency_ms == 2 and found.write_latency_ms == 2
    assert found.in_flight == 3 and found.busy == 0.25 and found.queue_depth == 0.5
    # a device set up again: its counters restart, and count from zero
    assert rates(after, before, 1.0).read_iops == 100


def test_read_stat_and_volume_stat_from_a_sys_block_dir(tmp_path: Path) -> None:
    for name, text in (("loop3", CAPTURED), ("loop4", OLD_KERNEL)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "stat").write_text(text)
    assert read_stat("/dev/loop3", str(tmp_path)) == parse_stat(CAPTURED)
    assert read_stat("/dev/loop9", str(tmp_path)) is None
    assert volume_stat(["/dev/loop3", "/dev/loop4"], str(tmp_path)).reads == 220966 + 100
    assert volume_stat(["/dev/loop9"], str(tmp_path)) is None


def test_between_orders_busiest_first_and_a_new_volume_shows_no_io() -> None:
    quiet = VolumeIO("a", "pv-a", "", ["/dev/loop1"], BlockStat(writes=1, write_sectors=8))
    busy = VolumeIO("b", "pvc-1", "shop/data", ["/dev/loop2"], BlockStat(writes=10, write_sectors=8000))
    before = Sample(10.0, {"a": VolumeIO("a", "pv-a", "", ["/dev/loop1"], BlockStat()),
                           "b": VolumeIO("b", "pvc-1", "shop/data", ["/dev/loop2"], BlockStat())})
    rows = between(before, Sample(12.0, {"a": quiet, "b": busy,
                                         "c": VolumeIO("c", "", "", ["/dev/loop5"], BlockStat(writes=99))}))
    assert [row.io.volume_id for row in rows] == ["b", "a", "c"]
    assert rows[0].rates.write_iops == 5 and rows[2].rates.write_iops == 0


class Fixed(Collector):
    def __init__(self, sample: Sample) -> None:
        self.sample = sample

    def collect(self) -> Iterator:
        return io_metrics(self.sample)


def test_io_metrics_are_named_and_labelled_by_volume_pv_and_claim() -> None:
    stat = parse_stat(OLD_KERNEL)
    registry = CollectorRegistry()
    registry.register(Fixed(Sample(0.0, {"v1": VolumeIO("v1", "pvc-1", "shop/data", ["/dev/loop3"], stat)})))
    text = generate_latest(registry).decode()
    labels = 'claim="shop/data",pv="pvc-1",volume="v1"'
    for line in (f"flexvol_volume_read_bytes_total{{{labels}}} 409600.0",
                 f"flexvol_volume_write_bytes_total{{{labels}}} 819200.0",
                 f"flexvol_volume_reads_total{{{labels}}} 100.0",
                 f"flexvol_volume_writes_total{{{labels}}} 200.0",
                 f"flexvol_volume_read_seconds_total{{{labels}}} 0.05",
                 f"flexvol_volume_write_seconds_total{{{labels}}} 0.4",
                 f"flexvol_volume_inflight_requests{{{labels}}} 2.0"):
        assert line in text, text
