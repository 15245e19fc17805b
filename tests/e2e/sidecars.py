"""The CSI sidecars of deploy/csi run as host processes beside `flexvol csi`, with the command
lines deploy/ ships: each argv is read from the manifest's container (plugin.yaml, or
snapshot-controller.yaml for the snapshot-controller), not written again here, and differs only
where a host process must (HOST_ARGS). The binaries come from scripts/csi-sidecars-build.sh.

    bin_dir = build()
    running = [start(name, bin_dir=bin_dir, socket=plugin_socket, kubeconfig=kubeconfig,
                     node_name=node, namespace="flexvol", log_dir=logs)
               for name in ("csi-provisioner", "csi-snapshotter")]
    ...
    stop_all(running)       # SIGTERM, then SIGKILL after the timeout; logs stay in log_dir
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "csi-sidecars-build.sh"
PLUGIN_MANIFEST = REPO / "deploy" / "csi" / "plugin.yaml"
SNAPSHOT_CONTROLLER_MANIFEST = REPO / "deploy" / "csi" / "snapshot-controller.yaml"
CONTAINER_CSI_DIR = "/csi"  # where the sidecars see the plugin dir (plugin.yaml's plugin-dir)

# Container name -> (manifest, binary the build script makes).
SIDECARS = {
    "csi-provisioner": (PLUGIN_MANIFEST, "csi-provisioner"),
    "csi-snapshotter": (PLUGIN_MANIFEST, "csi-snapshotter"),
    "liveness-probe": (PLUGIN_MANIFEST, "livenessprobe"),
    "snapshot-controller": (SNAPSHOT_CONTROLLER_MANIFEST, "snapshot-controller"),
}
# Where a host process must differ from its container, and why. A flag mapped to None is
# dropped; any other value replaces the manifest's.
HOST_ARGS: dict[str, dict[str, str | None]] = {
    # No pod or DaemonSet owns a host process: its CSIStorageCapacity object gets no owner
    # (1 would make the provisioner look up POD_NAME's DaemonSet and exit when there is none).
    "csi-provisioner": {"--capacity-ownerref-level": "-1"},
    # One instance, no replicas to elect among.
    "snapshot-controller": {"--leader-election": None, "--leader-election-namespace": None},
}


class SidecarError(Exception):
    """A sidecar that cannot be started as asked, with the reason a person can act on."""


def build() -> Path:
    """Build (or reuse) the sidecars; the bin dir is the script's last line."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SidecarError(f"{BUILD_SCRIPT.name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def crd_dir(bin_dir: Path) -> Path:
    """The snapshot CRDs of the snapshotter's release, beside the bin dir (apply them before
    the snapshot-controller and csi-snapshotter start)."""
    return bin_dir.parent / "crd"


def container(name: str) -> dict:
    """The manifest's container spec of sidecar `name`."""
    if name not in SIDECARS:
        raise SidecarError(f"unknown sidecar {name!r}; known: {', '.join(sorted(SIDECARS))}")
    manifest = SIDECARS[name][0]
    for doc in yaml.safe_load_all(manifest.read_text()):
        if doc and doc.get("kind") in ("DaemonSet", "Deployment"):
            for spec in doc["spec"]["template"]["spec"]["containers"]:
                if spec["name"] == name:
                    return spec
    raise SidecarError(f"{manifest} has no container {name!r}")


def _flag(arg: str) -> str:
    return arg.split("=", 1)[0]


def host_env(name: str, node_name: str, namespace: str) -> dict[str, str]:
    """The container's env, its fieldRefs resolved as the kubelet would for this host."""
    fields = {"spec.nodeName": node_name, "metadata.namespace": namespace,
              "metadata.name": f"{name}-{node_name}"}
    env = {}
    for item in container(name).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        path = item["valueFrom"]["fieldRef"]["fieldPath"]
        if path not in fields:
            raise SidecarError(f"{name}: env {item['name']} reads {path}, "
                               "which a host process has no value for")
        env[item["name"]] = fields[path]
    return env


def _expand(arg: str, env: dict[str, str]) -> str:
    """$(VAR) as Kubernetes expands it in args: from the container's env, else left as is."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def argv(name: str, *, bin_dir: Path, socket: Path, kubeconfig: Path,
         env: dict[str, str] | None = None) -> list[str]:
    """The command line of sidecar `name` as a host process: the manifest's args, its
    --csi-address pointed at the plugin's socket, HOST_ARGS applied, --kubeconfig added."""
    spec = container(name)
    overrides = dict(HOST_ARGS.get(name, {}))
    args: list[str] = []
    for arg in spec.get("args", []):
        flag = _flag(arg)
        if flag == "--csi-address":
            address = arg.split("=", 1)[1]
            if not address.startswith(CONTAINER_CSI_DIR + "/"):
                raise SidecarError(f"{name}: --csi-address {address} is not under {CONTAINER_CSI_DIR}")
            arg = f"--csi-address={socket}"
        elif flag in overrides:
            value = overrides.pop(flag)
            if value is None:
                continue
            arg = f"{flag}={value}"
        args.append(_expand(arg, env or {}))
    if overrides:
        # An override of a flag the manifest no longer has would silently do nothing.
        raise SidecarError(f"{name}: HOST_ARGS names {sorted(overrides)}, which the manifest lacks")
    if any(_flag(arg) == "--kubeconfig" for arg in args):
        raise SidecarError(f"{name}: the manifest already passes --kubeconfig")
    return [str(bin_dir / SIDECARS[name][1]), *args, f"--kubeconfig={kubeconfig}"]


@dataclass
class Sidecar:
    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self, lines: int = 0) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) if lines else text

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM to its process group (it runs in a session of its own), SIGKILL after
        `timeout`; the exit code (-15 for the sidecars, which end by the signal itself)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                self.process.wait(10)
        return self.process.returncode


def start(name: str, *, bin_dir: Path, socket: Path, kubeconfig: Path, node_name: str,
          namespace: str, log_dir: Path, extra_env: dict[str, str] | None = None) -> Sidecar:
    """Start sidecar `name`; its stdout and stderr go to log_dir/<name>.log."""
    binary = bin_dir / SIDECARS[name][1] if name in SIDECARS else None
    if binary is None or not os.access(binary, os.X_OK):
        raise SidecarError(f"{name}: no executable {binary}; {BUILD_SCRIPT.name} builds "
                           "csi-provisioner, csi-resizer, csi-snapshotter and snapshot-controller")
    env = host_env(name, node_name, namespace)
    command = argv(name, bin_dir=bin_dir, socket=socket, kubeconfig=kubeconfig, env=env)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"=== {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, **(extra_env or {})},
            start_new_session=True)
    return Sidecar(name, process, log_path)


def stop_all(sidecars: list[Sidecar], timeout: float = 15) -> dict[str, int]:
    """Stop every sidecar (also when one fails to stop); their exit codes by name."""
    codes = {}
    for sidecar in sidecars:
        try:
            codes[sidecar.name] = sidecar.stop(timeout)
        except Exception as error:  # the others must still be stopped
            codes[sidecar.name] = -1
            with sidecar.log_path.open("a") as log:
                log.write(f"=== stop failed: {error}\n")
    return codes


def collect_logs(sidecars: list[Sidecar], lines: int = 60) -> str:
    """The last lines of each sidecar's log, for a failure message."""
    return "\n".join(f"--- {sidecar.name} ({'running' if sidecar.alive() else 'exited'})\n"
                     f"{sidecar.log(lines)}" for sidecar in sidecars)
