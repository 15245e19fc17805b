"""`flexvol migrate-pv`, carried out: a bound FlexVolume PV becomes a CSI PV of the same name,
for the same volume and data, and its claim is bound again (migration.py says why this order).

Runs on the node whose pool holds the volume: it checks the kernel there (the volume must not
be mounted or attached) and marks the volume's record as a CSI volume. The plan is written to
`<data root>/migrations/<pv>.json` before the first change, because the old PV, and with it
everything the new one needs, is deleted half-way: a run killed at any step is finished by the
next one, which reads the plan and does only what is still missing.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError
from flexvol.core.faults import checkpoint
from flexvol.core.filesystems import DEFAULT_FS_TYPE
from flexvol.core.operations import in_use
from flexvol.csi.names import CREATED_BY
from flexvol.provisioning import claims, migration
from flexvol.provisioning.cluster import AlreadyExists, Cluster, NotFound
from flexvol.provisioning.migration import MigrationRefused, Plan

MIGRATIONS_DIR = "migrations"
# A PV name is a DNS subdomain: always a safe file name.
PV_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
POLL_SECONDS = 1.0


def state_path(config: Config, pv_name: str) -> str:
    return os.path.join(config.data_root, MIGRATIONS_DIR, f"{pv_name}.json")


def load_plan(config: Config, pv_name: str) -> Plan | None:
    path = state_path(config, pv_name)
    try:
        with open(path, encoding="utf-8") as file:
            return Plan.from_dict(json.load(file))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        raise MigrationRefused(f"the migration plan {path} cannot be read: {error}",
                               "move it aside only if the old PV still exists unchanged "
                               "(kubectl get pv); otherwise it holds what the new PV needs") from None


def save_plan(config: Config, plan: Plan) -> None:
    state.ensure_dirs(config)
    directory = os.path.dirname(state_path(config, plan.pv_name))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # fsynced: once the old PV is gone this file is the only copy of what the new one needs.
    state.atomic_write(state_path(config, plan.pv_name), json.dumps(plan.to_dict(), indent=1).encode())


class Migrator:
    def __init__(self, cluster: Cluster, config: Config, node: str, *, timeout: float = 120.0,
                 say: Callable[[str], None] = lambda line: None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.config = config
        self.node = node
        self.timeout = timeout
        self.say = say
        self.sleep = sleep
        self.clock = clock

    # ---- deciding ----------------------------------------------------------------------------

    def plan(self, pv_name: str) -> tuple[Plan | None, bool]:
        """(the plan, whether it was started already); (None, False) for a PV already migrated."""
        if not PV_NAME.match(pv_name):
            raise MigrationRefused(f"{pv_name[:80]!r} is not a PersistentVolume name")
        started = load_plan(self.config, pv_name)
        if started is not None:
            return started, True
        pv = self.cluster.get_pv(pv_name)
        if pv is None:
            raise MigrationRefused(f"PersistentVolume {pv_name} does not exist", "see kubectl get pv")
        if migration.is_migrated_pv(pv):
            return None, False
        if not migration.is_flexvol_pv(pv):
            source = next((key for key in (pv.get("spec") or {}) if key not in migration.SPEC_KEYS), "?")
            raise MigrationRefused(f"PersistentVolume {pv_name} is not a flexvol FlexVolume PV "
                                   f"(driver {migration.FLEX_DRIVER}); its source is {source}")
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        claim = (self.cluster.get_claim(ref.get("namespace", ""), ref.get("name", ""))
                 if ref.get("namespace") and ref.get("name") else None)
        migration.check_claim(pv, claim, started=False)
        assert claim is not None
        node_name = migration.node_of(pv, self.cluster.list_nodes())
        node = self._this_node(node_name)
        record = state.load_record(self.config, claims.volume_id_of_pv(pv) or "-")
        flex_fs = ((pv.get("spec") or {}).get("flexVolume") or {}).get("fsType", "")
        fs_type = (record and (record.formatted_fs or record.fs_type)) or flex_fs or DEFAULT_FS_TYPE
        plan = migration.make_plan(pv, claim, node_name, migration.topology_of(node), fs_type)
        self._check_idle(plan, node)
        return plan, False

    def _this_node(self, node_name: str) -> dict:
        if node_name != self.node:
            raise MigrationRefused(f"the volume is on node {node_name}, and this is node {self.node}",
                                   f"run flexvol migrate-pv on {node_name} (or pass --node when "
                                   "this machine's name differs from its node name)")
        node = self.cluster.get_node(node_name)
        if node is None:
            raise MigrationRefused(f"node {node_name} does not exist in the cluster")
        return node

    def _check_idle(self, plan: Plan, node: dict) -> None:
        """Nothing may use the volume: no pod names the claim, the node lists it nowhere, and
        the kernel here shows it neither mounted nor attached."""
        using = migration.pods_using(plan.claim_name, self.cluster.list_pods(plan.claim_namespace))
        if using:
            raise MigrationRefused(f"claim {plan.claim_key} is used by pod(s) {', '.join(using)}",
                                   "stop them (scale the workload to 0) and run this again")
        migration.check_node_idle(plan.pv_name, node)
        volume_id = plan.volume_id
        if state.load_record(self.config, volume_id) is None or not os.path.exists(
                self.config.backing_file(volume_id)):
            raise MigrationRefused(f"volume {volume_id} is not in this node's pool "
                                   f"({self.config.volumes_dir})",
                                   "check --root; a volume never mounted has no data to keep: "
                                   "recreate its claim with the CSI StorageClass instead")
        reasons = in_use(self.config, volume_id)
        if reasons:
            raise MigrationRefused(f"volume {volume_id} is in use: {'; '.join(reasons)}",
                                   "unmount it first (flexvol ls shows where)")

    # ---- doing -------------------------------------------------------------------------------

    def run(self, pv_name: str) -> str:
        plan, started = self.plan(pv_name)
        if plan is None:
            return f"PersistentVolume {pv_name} is a CSI PV of {migration.CSI_DRIVER} already: nothing to do"
        if not started:
            save_plan(self.config, plan)
            self.say(f"recorded the plan in {state_path(self.config, pv_name)}")
            checkpoint("migrate:planned")
        pv = self.cluster.get_pv(pv_name)
        old = pv if pv is not None and pv["metadata"].get("uid") == plan.old_uid else None
        new = pv if pv is not None and migration.is_migrated_pv(pv, plan.volume_id) else None
        if pv is not None and old is None and new is None:
            raise MigrationRefused(f"PersistentVolume {pv_name} was replaced by another PV (UID "
                                   f"{pv['metadata'].get('uid')}) since this migration began",
                                   f"the plan is in {state_path(self.config, pv_name)}")
        claim = self.cluster.get_claim(plan.claim_namespace, plan.claim_name)
        if claim is None or claim["metadata"].get("uid") != plan.claim_uid:
            raise MigrationRefused(f"claim {plan.claim_key} (UID {plan.claim_uid}) is gone",
                                   f"volume {plan.volume_id} and its data are kept (policy Retain); "
                                   f"the plan is in {state_path(self.config, pv_name)}")
        record = state.load_record(self.config, plan.volume_id)
        if new is None or record is None or record.csi_name != plan.volume_id:
            if started:  # the first run checked all this before it began
                self._check_idle(plan, self._this_node(plan.node))
            if old is not None:
                self._let_go(old)
            self._convert(plan)
            if new is None:
                self._create(plan)
        return self._wait_bound(plan)

    def _let_go(self, old: dict) -> None:
        name, uid = old["metadata"]["name"], old["metadata"]["uid"]
        if not migration.is_released(old):
            self.cluster.replace_pv(migration.released(old))
            self.say(f"PersistentVolume {name}: reclaim policy Retain, released from its claim")
            checkpoint("migrate:released")
        if not old["metadata"].get("deletionTimestamp"):
            try:
                self.cluster.delete_pv(name, uid)
            except NotFound:
                pass
            checkpoint("migrate:deleted")
        deadline = self.clock() + self.timeout
        while (current := self.cluster.get_pv(name)) is not None and current["metadata"].get("uid") == uid:
            if self.clock() >= deadline:
                raise MigrationRefused(
                    f"PersistentVolume {name} is still being deleted (finalizers "
                    f"{', '.join(current['metadata'].get('finalizers') or []) or 'none'}, phase "
                    f"{(current.get('status') or {}).get('phase')})",
                    "kube-controller-manager removes kubernetes.io/pv-protection once the PV is "
                    "Released; run this again to go on")
            self.sleep(POLL_SECONDS)
        self.say(f"deleted FlexVolume PersistentVolume {name}; volume and data kept")

    def _convert(self, plan: Plan) -> None:
        """Mark the volume as CSI's (csi/store.py: DeleteVolume removes only volumes that carry
        a CSI name); touches the record only, never the data."""
        state.ensure_dirs(self.config)
        with state.VolumeLock(self.config, plan.volume_id, wait=10):
            record = state.load_record(self.config, plan.volume_id)
            if record is None:
                raise FlexvolError(f"the record of volume {plan.volume_id} disappeared",
                                   "see flexvol ls and flexvol repair")
            if record.csi_name == plan.volume_id and record.created_by == CREATED_BY:
                return
            if record.csi_name and record.csi_name != plan.volume_id:
                raise MigrationRefused(f"volume {plan.volume_id} already belongs to CSI name "
                                       f"{record.csi_name!r}")
            reasons = in_use(self.config, plan.volume_id)
            if reasons:
                raise MigrationRefused(f"volume {plan.volume_id} is in use: {'; '.join(reasons)}")
            record.csi_name, record.created_by = plan.volume_id, CREATED_BY
            state.save_record(self.config, record)
        self.say(f"volume {plan.volume_id} is now a CSI volume (csi_name {plan.volume_id})")
        checkpoint("migrate:converted")

    def _create(self, plan: Plan) -> None:
        try:
            self.cluster.create_pv(migration.csi_pv(plan))
        except AlreadyExists:
            existing = self.cluster.get_pv(plan.pv_name)
            if existing is None or not migration.is_migrated_pv(existing, plan.volume_id):
                raise MigrationRefused(f"a PersistentVolume {plan.pv_name} that is not this "
                                       "migration's appeared meanwhile") from None
        self.say(f"created CSI PersistentVolume {plan.pv_name} ({migration.CSI_DRIVER}, "
                 f"volumeHandle {plan.volume_id}) for claim {plan.claim_key}")
        checkpoint("migrate:created")

    def _wait_bound(self, plan: Plan) -> str:
        deadline = self.clock() + self.timeout
        while True:
            claim = self.cluster.get_claim(plan.claim_namespace, plan.claim_name) or {}
            phase = (claim.get("status") or {}).get("phase", "")
            if phase == "Bound" and (claim.get("spec") or {}).get("volumeName") == plan.pv_name:
                break
            if self.clock() >= deadline:
                raise MigrationRefused(
                    f"claim {plan.claim_key} is {phase or 'in no phase'}, not yet Bound to the CSI "
                    f"PersistentVolume {plan.pv_name}",
                    "the PV controller binds it at its next claim resync (kube-controller-manager "
                    "--pvclaimbinder-sync-period, 15 s by default); run this again to check")
            self.sleep(POLL_SECONDS)
        try:
            os.unlink(state_path(self.config, plan.pv_name))
        except FileNotFoundError:
            pass
        return (f"PersistentVolume {plan.pv_name} is a CSI PV of {migration.CSI_DRIVER} for volume "
                f"{plan.volume_id}; claim {plan.claim_key} is Bound")
