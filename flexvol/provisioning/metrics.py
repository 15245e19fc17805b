"""Prometheus metrics of one node: its volumes (size, allocated bytes, mounted, as `flexvol ls`
sees them), its pool (free, promised, available: budget.py) and the driver's calls (count and
latency per verb) from the call journal.

The journal is followed from where the last scrape stopped, so each call is counted once while
the agent runs, also across the journal's rotation to calls.jsonl.1.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from flexvol.core import budget, journal
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError
from flexvol.toolkit import inventory, volumeio

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class CallStats:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self.totals: dict[str, int] = {}

    def add(self, entry: dict) -> None:
        verb = str(entry.get("verb") or "unknown")
        if verb.startswith("toolkit:"):
            return  # an operator's action, not a driver call
        status = str(entry.get("status") or "unknown")
        seconds = float(entry.get("ms") or 0) / 1000
        self.counts[(verb, status)] = self.counts.get((verb, status), 0) + 1
        counts = self.buckets.setdefault(verb, [0] * len(BUCKETS))
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[index] += 1
        self.sums[verb] = self.sums.get(verb, 0.0) + seconds
        self.totals[verb] = self.totals.get(verb, 0) + 1


class NodeCollector(Collector):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.follower = journal.Follower(config.journal_path)
        self.calls = CallStats()

    def collect(self) -> Iterator:
        for entry in self.follower.new_entries():
            self.calls.add(entry)
        yield from self._volume_metrics()
        yield from self._pool_metrics()
        yield from self._call_metrics()

    def _volume_metrics(self) -> Iterator:
        size = GaugeMetricFamily("flexvol_volume_size_bytes", "Size of the volume's backing file",
                                 labels=["volume"])
        allocated = GaugeMetricFamily("flexvol_volume_allocated_bytes", "Bytes the sparse backing "
                                      "file occupies on the pool filesystem", labels=["volume"])
        mounted = GaugeMetricFamily("flexvol_volume_mounted", "1 if a loop device of the volume "
                                    "is mounted anywhere", labels=["volume"])
        views = inventory.volumes(self.config)
        for view in views:
            size.add_metric([view.volume_id], view.size_bytes or 0)
            allocated.add_metric([view.volume_id], view.allocated_bytes or 0)
            mounted.add_metric([view.volume_id], 1 if view.state == "mounted" else 0)
        yield from (size, allocated, mounted)
        yield from io_metrics(volumeio.sample(self.config, views))

    def _pool_metrics(self) -> Iterator:
        """The pool's figures as the driver counts them (budget.py), to alert before it is full."""
        try:
            pool = budget.measure(self.config)
        except (OSError, FlexvolError):
            return
        for name, text, value in (
            ("flexvol_pool_size_bytes", "Size of the pool filesystem", pool.total_bytes),
            ("flexvol_pool_free_bytes", "Free space of the pool filesystem (statvfs f_bavail)",
             pool.free_bytes),
            ("flexvol_pool_promised_bytes", "What thin volumes were promised and have not "
             "written yet", pool.promised_bytes),
            ("flexvol_pool_unbacked_bytes", "What thin volumes were promised beyond the free "
             "space: above 0, their writes fail once the pool is full", pool.unbacked_bytes),
            ("flexvol_pool_available_bytes", "What a new or grown volume may still take",
             pool.available_bytes),
            ("flexvol_pool_low", f"1 when under {budget.LOW_FRACTION:.0%} of the pool is free or "
             "promises are unbacked", 1 if pool.low else 0),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge

    def _call_metrics(self) -> Iterator:
        calls = CounterMetricFamily("flexvol_driver_calls", "Driver calls by verb and status",
                                    labels=["verb", "status"])
        for (verb, status), count in sorted(self.calls.counts.items()):
            calls.add_metric([verb, status], count)
        latency = HistogramMetricFamily("flexvol_driver_call_duration_seconds",
                                        "Duration of driver calls by verb", labels=["verb"])
        for verb in sorted(self.calls.totals):
            buckets = [(str(bound), count) for bound, count in zip(BUCKETS, self.calls.buckets[verb],
                                                                   strict=True)]
            buckets.append(("+Inf", self.calls.totals[verb]))
            latency.add_metric([verb], buckets, self.calls.sums[verb])
        yield from (calls, latency)


# name, help, the BlockStat field, and its unit factor (sectors to bytes, ms to seconds)
IO_COUNTERS = (
    ("flexvol_volume_read_bytes", "Bytes read from the volume's loop device", "read_sectors", 512),
    ("flexvol_volume_write_bytes", "Bytes written to the volume's loop device", "write_sectors", 512),
    ("flexvol_volume_reads", "Read requests completed by the volume's loop device", "reads", 1),
    ("flexvol_volume_writes", "Write requests completed by the volume's loop device", "writes", 1),
    ("flexvol_volume_read_seconds", "Time read requests spent, summed over requests", "read_ms", 0.001),
    ("flexvol_volume_write_seconds", "Time write requests spent, summed over requests", "write_ms", 0.001),
)
IO_LABELS = ["volume", "pv", "claim"]


def io_metrics(found: volumeio.Sample) -> Iterator:
    """Live I/O of each attached volume from its loop devices' /sys/block stat counters; they
    restart from 0 when a volume's loop device is set up again (a counter reset)."""
    counters = [(CounterMetricFamily(name, text, labels=IO_LABELS), field, factor)
                for name, text, field, factor in IO_COUNTERS]
    inflight = GaugeMetricFamily("flexvol_volume_inflight_requests", "Requests in flight on the volume's "
                                 "loop device now", labels=IO_LABELS)
    for item in sorted(found.volumes.values(), key=lambda io: io.volume_id):
        labels = [item.volume_id, item.pv, item.claim]
        for family, field, factor in counters:
            value = getattr(item.stat, field)
            family.add_metric(labels, value * factor if factor != 1 else value)
        inflight.add_metric(labels, item.stat.in_flight)
    yield from (family for family, _field, _factor in counters)
    yield inflight


def registry_for(config: Config) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(NodeCollector(config))
    return registry
