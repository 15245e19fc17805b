"""The CSI lifecycle of a fresh volume through a running `flexvol csi`, beside its shell floor.

The plugin is one long-running process started once for the run; this process is its gRPC
client (as the kubelet and the external-provisioner are) and times each RPC as the caller sees
it. The floor is one bash script doing the same kernel steps and reading `$EPOCHREALTIME`
between the groups of steps each RPC stands for, so the floor pays no interpreter or bash start
per RPC, just as the plugin does not: what is left between the two is the plugin's own work
and the gRPC round trip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from floors import CSI_STEPS, render_csi

REPO = Path(__file__).resolve().parents[1]
NODE = "bench-node"
RPCS = tuple(name for name, _ in CSI_STEPS)
# The StorageClass in deploy/csi/storageclass.yaml, as the external-provisioner passes it (its
# csi.storage.k8s.io/fstype becomes the capability's fs_type).
PARAMETERS = {"allocation": "thick"}


class Plugin:
    """`flexvol csi` on its own socket and data root under the run's directory."""

    def __init__(self, work: Path) -> None:
        import grpc

        from flexvol.csi.proto import csi_pb2_grpc

        self.socket = work / "csi.sock"
        self.root = work / "csi-data"
        with open(work / "csi.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "bin" / "flexvol"), "csi", "--endpoint", f"unix://{self.socket}",
                 "--node-id", NODE, "--root", str(self.root)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, "FLEXVOL_ROOT": str(self.root)})
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        try:
            grpc.channel_ready_future(self.channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            self.stop()
            raise RuntimeError(f"flexvol csi did not come up: {(work / 'csi.log').read_text()}") from None
        self.controller = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)

    def stop(self) -> None:
        """SIGTERM (the plugin removes its socket), and SIGKILL if it has not gone in 30 s."""
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def lifecycle(plugin: Plugin, name: str, staging: str, target: str, size: int) -> dict[str, float]:
    """The six RPCs of one volume's life, in order; ms of each as the client sees it."""
    from flexvol.csi.proto import csi_pb2

    capability = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))
    times: dict[str, float] = {}

    def call(rpc: str, method: Callable[..., object], request: object) -> object:
        started = time.perf_counter()
        reply = method(request, timeout=120)
        times[rpc] = (time.perf_counter() - started) * 1000
        return reply

    volume = call("CreateVolume", plugin.controller.CreateVolume, csi_pb2.CreateVolumeRequest(
        name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[capability], parameters=PARAMETERS)).volume  # type: ignore[attr-defined]
    volume_id = volume.volume_id
    call("NodeStageVolume", plugin.node.NodeStageVolume, csi_pb2.NodeStageVolumeRequest(
        volume_id=volume_id, staging_target_path=staging, volume_capability=capability,
        volume_context=dict(volume.volume_context)))
    call("NodePublishVolume", plugin.node.NodePublishVolume, csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id, staging_target_path=staging, target_path=target,
        volume_capability=capability, volume_context=dict(volume.volume_context)))
    call("NodeUnpublishVolume", plugin.node.NodeUnpublishVolume,
         csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target))
    call("NodeUnstageVolume", plugin.node.NodeUnstageVolume,
         csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging))
    call("DeleteVolume", plugin.controller.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id))
    return times


def floor_steps(script: str) -> dict[str, float]:
    """Run the floor script; ms of each RPC's group of steps from the script's own clock."""
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    if done.returncode:
        raise RuntimeError(f"CSI floor script failed: {done.stdout}{done.stderr}\n{script}")
    stamps = [float(value) for value in done.stdout.split()]
    return {rpc: (stamps[index + 1] - stamps[index]) * 1000 for index, rpc in enumerate(RPCS)}


def csi_lifecycle(work: Path, rounds: int, size: int,
                  interleave: Callable[[int, dict[str, Callable[[int], float]]], dict[str, list[float]]]
                  ) -> dict[str, object]:
    """Totals per round for the plugin and the floor, and each RPC's times on both sides.

    Everything lives under `work`: the plugin's data root and socket, the floor's files, and
    the staging and target dirs under work/mnt (where the run's cleanup looks).
    """
    per_rpc: dict[str, dict[str, list[float]]] = {rpc: {"plugin": [], "shell floor": []} for rpc in RPCS}
    plugin = Plugin(work)
    try:
        def paths(prefix: str, number: int) -> tuple[str, str]:
            # The kubelet makes the staging dir before NodeStageVolume; the plugin makes the target.
            staging = work / "mnt" / f"{prefix}-stage{number}"
            staging.mkdir()
            return str(staging), str(work / "mnt" / f"{prefix}-pub{number}")

        def plugin_case(number: int, record: bool = True) -> float:
            staging, target = paths("csi", number)
            times = lifecycle(plugin, f"bench-csi-{number}", staging, target, size)
            if record:
                for rpc, ms in times.items():
                    per_rpc[rpc]["plugin"].append(ms)
            return sum(times.values())

        def floor_case(number: int, record: bool = True) -> float:
            staging, target = paths("floor-csi", number)
            times = floor_steps(render_csi(size=str(size), file=str(work / f"floor-csi{number}.img"),
                                           staging=staging, target=target))
            if record:
                for rpc, ms in times.items():
                    per_rpc[rpc]["shell floor"].append(ms)
            return sum(times.values())

        # One unmeasured round each: the plugin's first calls import what they need.
        plugin_case(-1, record=False)
        floor_case(-1, record=False)
        plugin_cpu, floor_cpu = cpu_ms(plugin.process.pid), children_cpu_ms()
        totals = interleave(rounds, {"plugin": plugin_case, "shell floor": floor_case})
        cpu = {"plugin": round((cpu_ms(plugin.process.pid) - plugin_cpu) / rounds, 2),
               "shell floor": round((children_cpu_ms() - floor_cpu) / rounds, 2)}
    finally:
        plugin.stop()
    return {**totals, "per rpc": per_rpc, "cpu ms per lifecycle": cpu}


def cpu_ms(pid: int) -> float:
    """User and system CPU time of a running process and of its children it has reaped (the
    plugin's mkfs), from /proc/PID/stat, in ms (clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def children_cpu_ms() -> float:
    """User and system CPU time of this process's reaped children (the floor scripts), in ms."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000
