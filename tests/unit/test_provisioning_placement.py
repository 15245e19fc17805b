"""Node budgets and the choice of a node, from published capacity and the PVs placed since."""

from __future__ import annotations

import copy

from flexvol.provisioning import names, placement
from tests.helpers.fakekube import fixture

ME = "flexvol/loop"
GiB = 1 << 30


def pv(name: str, size: str, node: str = "worker-1", by: str = ME, volume_id: str | None = None) -> dict:
    return {
        "metadata": {"name": name, "annotations": {names.PROVISIONED_BY_ANNOTATION: by,
                                                   names.NODE_ANNOTATION: node}},
        "spec": {"capacity": {"storage": size},
                 "flexVolume": {"driver": ME, "options": {"volumeID": volume_id or name, "size": size}}},
    }


def test_budget_counts_published_volumes_and_pvs_placed_since_once_each() -> None:
    capacity = fixture("capacity-worker-1")  # 10Gi, manual-1 of 2Gi on disk
    pvs = [
        pv("pvc-a", "3Gi"),                       # placed, not yet on disk
        pv("manual-1", "1Gi"),                    # on disk already: counted at its larger size
        pv("pvc-b", "4Gi", node="worker-2"),      # another node
        pv("pvc-c", "4Gi", by="other/driver"),    # another provisioner
    ]
    budget = placement.node_budget("worker-1", capacity, pvs, ME)
    assert budget == placement.Budget("worker-1", 10 * GiB, 5 * GiB)
    assert budget.free_bytes == 5 * GiB


def test_no_published_capacity_is_no_budget() -> None:
    assert placement.node_budget("worker-9", None, [], ME) is None


def test_selected_node_with_room_is_taken_and_without_names_the_shortfall() -> None:
    budget = placement.Budget("worker-1", 10 * GiB, 8 * GiB)
    assert placement.check_node("worker-1", budget, GiB).node == "worker-1"
    refused = placement.check_node("worker-1", budget, 3 * GiB)
    assert refused.node is None
    assert refused.message == ("no room for 3Gi on the selected node: "
                               "worker-1: 2Gi free of 10Gi, 1Gi short")
    missing = placement.check_node("worker-1", None, GiB)
    assert "no capacity published (is the flexvol agent running there?)" in missing.message


def test_immediate_placement_takes_the_node_with_most_room() -> None:
    budgets = {
        "a": placement.Budget("a", 10 * GiB, 9 * GiB),
        "b": placement.Budget("b", 10 * GiB, 2 * GiB),
        "c": placement.Budget("c", 20 * GiB, 12 * GiB),
    }
    chosen = placement.choose_node(GiB, budgets)
    assert chosen.node == "b"  # 8Gi free; c also has 8Gi but sorts after b
    assert chosen.message == "placed on b, which had 8Gi free of 10Gi"


def test_cordoned_nodes_are_skipped() -> None:
    budgets = {"a": placement.Budget("a", 10 * GiB, 0), "b": placement.Budget("b", 10 * GiB, 5 * GiB)}
    assert placement.choose_node(GiB, budgets, cordoned={"a"}).node == "b"


def test_when_nothing_fits_every_node_is_named_with_its_shortfall() -> None:
    budgets = {
        "a": placement.Budget("a", 10 * GiB, 9 * GiB),
        "b": None,
        "c": placement.Budget("c", 4 * GiB, 0),
    }
    chosen = placement.choose_node(5 * GiB, budgets, cordoned={"d"} | set())
    assert chosen.node is None
    assert chosen.message == (
        "no node has room for 5Gi: a: 1Gi free of 10Gi, 4Gi short; "
        "b: no capacity published (is the flexvol agent running there?); "
        "c: 4Gi free of 4Gi, 1Gi short")
    assert placement.choose_node(GiB, {}).message == "no node runs the flexvol agent"


def test_pv_size_rounds_up_like_the_driver() -> None:
    assert placement.pv_bytes(pv("x", "1G")) == 1_000_001_536
    broken = copy.deepcopy(pv("x", "1G"))
    broken["spec"]["capacity"]["storage"] = "nonsense"
    assert placement.pv_bytes(broken) == 0
