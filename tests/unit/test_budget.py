"""The capacity budget's arithmetic (budget.py), regression for the defect "the capacity budget
counts the pool's size, not its free space": a pool already holding other data was promised
its whole size, and writes into a volume past the real free space failed with EIO inside the
pod and damaged its filesystem. What a volume may take is now the pool's real free space minus
what thin volumes were promised and have not written yet."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flexvol.core import budget, state
from flexvol.core.budget import Pool
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput, Refused
from flexvol.core.options import parse_spec
from flexvol.core.quantity import human_bytes

MiB = 1 << 20
GiB = 1 << 30


def pool(free: int, sizes: dict[str, tuple[int, int]], total: int = 320 * MiB, ratio: float = 1.0) -> Pool:
    return Pool("/pool/volumes", total, free, ratio, sizes)


def test_other_data_on_the_pool_is_not_promised_to_volumes() -> None:
    # the defect's pool: 320M, 200M of other data, nothing of ours yet
    found = pool(120 * MiB, {})
    assert found.budget_bytes == 320 * MiB        # what the old budget promised
    assert found.available_bytes == 120 * MiB     # what is really there


def test_thin_promises_not_yet_written_are_taken_off_the_free_space() -> None:
    found = pool(120 * MiB, {"thin": (100 * MiB, 10 * MiB)})
    assert found.committed_bytes == 100 * MiB and found.allocated_bytes == 10 * MiB
    assert found.promised_bytes == 90 * MiB
    assert found.available_bytes == 30 * MiB
    assert found.unbacked_bytes == 0


def test_a_thick_volume_counts_as_fully_allocated() -> None:
    found = pool(70 * MiB, {"thick": (50 * MiB, 50 * MiB), "thin": (40 * MiB, 0)})
    assert found.promised_bytes == 40 * MiB
    assert found.available_bytes == 30 * MiB


def test_more_blocks_than_size_never_counts_as_a_negative_promise() -> None:
    # xfs speculative preallocation, extent tree blocks: st_blocks * 512 may exceed st_size
    found = pool(100 * MiB, {"a": (10 * MiB, 12 * MiB), "b": (10 * MiB, 0)})
    assert found.promised_bytes == 10 * MiB and found.available_bytes == 90 * MiB


def test_other_data_growing_past_the_promises_leaves_them_unbacked_and_low() -> None:
    found = pool(20 * MiB, {"thin": (100 * MiB, 10 * MiB)})
    assert found.unbacked_bytes == 70 * MiB
    assert found.available_bytes == 0
    assert found.low


def test_low_below_a_tenth_of_the_pool() -> None:
    assert not pool(40 * MiB, {}).low
    assert pool(30 * MiB, {}).low


def test_the_overcommit_ratio_can_only_lower_the_figure() -> None:
    assert pool(300 * MiB, {"a": (100 * MiB, 100 * MiB)}, ratio=0.5).available_bytes == 60 * MiB
    # a ratio above 1 no longer promises what is not free
    assert pool(120 * MiB, {}, ratio=4).available_bytes == 120 * MiB


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config


def use(monkeypatch: pytest.MonkeyPatch, found: Pool) -> None:
    monkeypatch.setattr(budget, "measure", lambda config: found)


def no_raw_numbers(text: str) -> None:
    assert not re.search(r"\d{5,}", text), text
    assert "Ki" not in text, text


def test_a_volume_past_the_real_free_space_is_refused_in_human_units(
        config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, pool(120 * MiB + 12345, {}))
    with pytest.raises(Refused) as refused:
        budget.check(config, 250 * MiB, "v2")
    text = str(refused.value)
    no_raw_numbers(text)
    assert "volume v2 at 250Mi needs 250Mi more of the pool" in text
    assert "120.0Mi of free space" in text and "130.0Mi short" in text
    assert "ask for at most 120.0Mi" in text


def test_growth_needs_only_the_added_size(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, pool(120 * MiB, {"v1": (64 * MiB, 64 * MiB)}))
    budget.check(config, 184 * MiB, "v1")  # 120Mi more: fits exactly
    with pytest.raises(Refused) as refused:
        budget.check(config, 200 * MiB, "v1")
    assert "growing volume v1 from 64Mi to 200Mi needs 136Mi more" in str(refused.value)
    budget.check(config, 64 * MiB, "v1")  # no growth, nothing to check


def test_the_budget_still_caps_the_sum_of_sizes(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, pool(300 * MiB, {"a": (100 * MiB, 100 * MiB)}, ratio=0.5))
    with pytest.raises(Refused) as refused:
        budget.check(config, 80 * MiB, "b")
    assert "budget 160Mi (0.5 x 320Mi): 20Mi over" in str(refused.value)


def test_larger_than_the_whole_pool_is_invalid(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, pool(300 * MiB, {}))
    with pytest.raises(InvalidInput, match="larger than the whole pool filesystem"):
        budget.check(config, GiB, "big")


def test_backing_files_are_read_with_their_allocation(config: Config) -> None:
    with open(config.backing_file("sparse"), "wb") as handle:
        handle.truncate(8 * MiB)
    with open(config.backing_file("written"), "wb") as handle:
        handle.write(b"x" * MiB)
        handle.truncate(4 * MiB)
    Path(config.volumes_dir, "notes.txt").write_text("not a volume")
    found = budget.backing_files(config)
    assert set(found) == {"sparse", "written"}
    assert found["sparse"] == (8 * MiB, 0)
    assert found["written"][0] == 4 * MiB and found["written"][1] >= MiB
    measured = budget.measure(config)
    assert measured.committed_bytes == 12 * MiB
    assert measured.promised_bytes <= 11 * MiB


def test_human_bytes_rounds_and_never_shows_kibibytes() -> None:
    assert human_bytes(64 * MiB) == "64Mi"
    assert human_bytes(125_000_000) == "119.2Mi"
    assert human_bytes(3 * GiB + 5) == "3.0Gi"
    assert human_bytes(300 << 10) == "0.29Mi"
    assert human_bytes(4096) == "<0.01Mi"
    assert human_bytes(0) == "0"


def test_allocation_option_is_thick_by_default_thin_on_request_and_nothing_else() -> None:
    assert parse_spec({"volumeID": "v1"}).allocation == "thick"
    assert parse_spec({"volumeID": "v1", "allocation": "thin"}).allocation == "thin"
    with pytest.raises(InvalidInput) as refused:
        parse_spec({"volumeID": "v1", "allocation": "fat"})
    assert "option 'allocation' must be 'thin' or 'thick', got 'fat'" in str(refused.value)


def reservation_record(config: Config, volume_id: str, allocation: str, size: int = 8 * MiB) -> state.Record:
    with open(config.backing_file(volume_id), "wb") as handle:
        handle.truncate(size)
    record = state.new_record(volume_id, size, "ext4")
    record.allocation = allocation
    return record


def test_a_thick_volume_is_reserved_once_and_a_thin_one_never(config: Config) -> None:
    from flexvol.core import backing

    thin = reservation_record(config, "thin", "thin")
    assert backing.ensure_reserved(config, thin) == []
    assert os.stat(config.backing_file("thin")).st_blocks == 0
    thick = reservation_record(config, "thick", "thick")
    assert backing.ensure_reserved(config, thick) == []
    assert os.stat(config.backing_file("thick")).st_blocks * 512 >= 8 * MiB
    assert state.load_record(config, "thick").reserved is True


def test_a_reserved_volume_that_lost_blocks_is_mounted_anyway_with_a_note(
        config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    from flexvol.core import backing

    record = reservation_record(config, "thick", "thick")
    record.reserved = True  # reserved once; a discard mount gave blocks back since

    def full(path: str, size: int, progress: object = None) -> None:
        raise Refused("reserving the blocks failed: No space left on device", "free space")

    monkeypatch.setattr(backing, "reserve_blocks", full)
    notes = backing.ensure_reserved(config, record)
    assert notes and "thick volume thick is not fully reserved" in notes[0]
    # never reserved yet (new, or a call killed before it finished): refused
    with pytest.raises(Refused):
        backing.ensure_reserved(config, reservation_record(config, "new", "thick"))
