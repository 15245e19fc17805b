"""Where a volume fits: each node's budget from what its agent published and the PVs placed
there since, and the choice of a node for an Immediate claim.

A node's budget is its published pool capacity minus every volume committed to it: those the
agent found on disk and those the provisioner placed there (a PV's volume exists on disk only
after its first mount, so the agent's count alone lags behind).
"""

from __future__ import annotations

from dataclasses import dataclass

from flexvol.core.errors import InvalidInput
from flexvol.core.options import SIZE_ALIGNMENT
from flexvol.core.quantity import human_bytes, parse_quantity
from flexvol.provisioning import claims


@dataclass(frozen=True)
class Budget:
    node: str
    capacity_bytes: int
    committed_bytes: int

    @property
    def free_bytes(self) -> int:
        return max(0, self.capacity_bytes - self.committed_bytes)


@dataclass(frozen=True)
class Placement:
    node: str | None
    message: str            # for the claim's event: where it went, or why nowhere


def pv_bytes(pv: dict) -> int:
    text = ((pv.get("spec") or {}).get("capacity") or {}).get("storage", "0")
    try:
        size = parse_quantity(text)
    except InvalidInput:
        return 0
    return -(-size // SIZE_ALIGNMENT) * SIZE_ALIGNMENT


def node_budget(node: str, capacity: dict | None, pvs: list[dict], provisioner: str) -> Budget | None:
    """The node's budget, or None if its agent never published one."""
    if capacity is None:
        return None
    committed: dict[str, int] = {}
    for volume_id, size in (capacity.get("volumes") or {}).items():
        committed[volume_id] = int(size)
    for pv in pvs:
        if claims.provisioned_by(pv) != provisioner or claims.node_of_pv(pv) != node:
            continue
        volume_id = claims.volume_id_of_pv(pv)
        if volume_id:
            committed[volume_id] = max(committed.get(volume_id, 0), pv_bytes(pv))
    return Budget(node, int(capacity.get("capacityBytes", 0)), sum(committed.values()))


def shortfall(budget: Budget | None, node: str, request_bytes: int) -> str | None:
    """Why `node` cannot take the request, or None if it can."""
    if budget is None:
        return f"{node}: no capacity published (is the flexvol agent running there?)"
    if budget.free_bytes < request_bytes:
        missing = request_bytes - budget.free_bytes
        return (f"{node}: {human_bytes(budget.free_bytes)} free of "
                f"{human_bytes(budget.capacity_bytes)}, {human_bytes(missing)} short")
    return None


def check_node(node: str, budget: Budget | None, request_bytes: int) -> Placement:
    """The scheduler chose `node` (WaitForFirstConsumer): does the volume fit there?"""
    problem = shortfall(budget, node, request_bytes)
    if problem:
        return Placement(None, f"no room for {human_bytes(request_bytes)} on the selected node: "
                               f"{problem}")
    return Placement(node, f"placed on {node}, the node the scheduler selected")


def choose_node(request_bytes: int, budgets: dict[str, Budget | None],
                cordoned: frozenset[str] | set[str] = frozenset()) -> Placement:
    """Immediate binding: the schedulable node with the most free budget that fits."""
    problems: list[str] = []
    fitting: list[Budget] = []
    for node in sorted(budgets):
        if node in cordoned:
            problems.append(f"{node}: cordoned")
            continue
        problem = shortfall(budgets[node], node, request_bytes)
        if problem:
            problems.append(problem)
        else:
            fitting.append(budgets[node])  # type: ignore[arg-type]
    if not fitting:
        if not problems:
            return Placement(None, "no node runs the flexvol agent")
        return Placement(None, f"no node has room for {human_bytes(request_bytes)}: "
                               + "; ".join(problems))
    best = min(fitting, key=lambda budget: (-budget.free_bytes, budget.node))
    return Placement(best.node, f"placed on {best.node}, which had "
                                f"{human_bytes(best.free_bytes)} free of "
                                f"{human_bytes(best.capacity_bytes)}")
