"""A real node (containerd + kubelet) and optionally a control plane, all in one temporary root.

Everything binds to 127.0.0.1 or to sockets under the root. The binaries come from
scripts/e2e-build.sh (built once, then cached). `Cluster.stop()` removes every process, mount,
loop device, cgroup and file the run made, also after a failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flexvol.core import guard, kernel
from flexvol.core.errors import FlexvolError
from tests.e2e import release

REPO = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO / "scripts" / "flexvol_image.py"
PAUSE_IMAGE = "localhost/flexvol-e2e/pause:1"
APP_IMAGE = "localhost/flexvol-e2e/app:1"
DRIVER_NAME = "flexvol/loop"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_BASE = Path("/sys/fs/cgroup")
# Fixed paths kubelet 1.20 and containerd 1.6 create whatever their configured dirs are (1.37
# and containerd 2.2 create no others: NRI, which would, is turned off in tests/e2e/release.py).
# One cluster at a time on a machine: clusters share the kubelet's fixed paths and the runtime's
# `k8s.io` cgroups, and each one's cleanup removes those it found absent.
MACHINE_LOCK = Path("/run/flexvol-e2e.lock")
FIXED_PATHS = [Path(p) for p in ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/log/pods",
                                 "/var/log/containers", "/run/containerd/s", "/run/containerd")]
CORE_PROCESSES = ("containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                  "kubelet")


class E2EError(AssertionError):
    pass


def build() -> Path:
    """The cached binaries' directory of the release FLEXVOL_E2E_K8S names (built on the first run)."""
    script = release.BUILD_SCRIPTS[release.chosen()]
    done = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise E2EError(f"{script} failed ({done.returncode}); its log is above")
    return Path(done.stdout.strip().splitlines()[-1])


def build_image() -> Path:
    """The cached flexvol image tarball deploy/ runs (built offline on the first run)."""
    done = subprocess.run([sys.executable, str(IMAGE_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise E2EError(f"{IMAGE_SCRIPT} failed ({done.returncode}); its log is above")
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, interval: float = 0.5,
             on_timeout: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # a check may fail while things come up
            last_error = f" (last error: {error})"
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise E2EError(f"timed out after {timeout:.0f}s waiting for {what}{last_error}\n{extra}")
        time.sleep(interval)


def _maybe_device_node(backing: str) -> bool:
    """Whether a backing file /sys names may be a device node (others' loop devices over
    regular files are never opened)."""
    try:
        return backing == "/" or stat.S_ISBLK(os.stat(backing).st_mode)
    except OSError:
        return False


def _backing_rdev(device: str) -> int | None:
    """The device number of a loop device's backing file when that is a device node
    (LOOP_GET_STATUS64's lo_rdev), else 0; None if it cannot be read."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        status = bytearray(232)  # struct loop_info64
        fcntl.ioctl(fd, 0x4C05, status)  # LOOP_GET_STATUS64
    except OSError:
        return None
    finally:
        os.close(fd)
    return int.from_bytes(status[16:24], sys.byteorder)


class Cluster:
    """One temporary root; start the pieces you need, stop() undoes everything."""

    def __init__(self, binaries: Path, prefix: str) -> None:
        self._lock = open(MACHINE_LOCK, "a")  # noqa: SIM115 - held until stop()
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # waits while another run's cluster is up
        self.bin = binaries / "bin"
        self.images = binaries / "images"
        self.current = release.is_current(binaries)
        self.base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.name = self.base.name
        self.node_name = socket.gethostname().lower()
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = self.base / "logs"
        self.logs.mkdir()
        self.plugin_dir = self.base / "plugins"
        self.data_root = self.base / "flexvol"
        self.kubelet_root = self.base / "kubelet"
        self.manifests = self.base / "manifests"
        self.containerd_dir = self.base / "containerd"
        self.socket = self.containerd_dir / "containerd.sock"
        self.kubeconfig: Path | None = None
        self.api_port = 0
        self.cgroup_root = f"/{self.name}"
        self.existing_fixed = {p for p in FIXED_PATHS if p.exists()}
        self.existing_k8s_cgroups = {p for p in CGROUP_BASE.glob("*/k8s.io")}
        self.env = {"PATH": f"{self.bin}:{SYSTEM_PATH}", "HOME": str(self.base)}
        self.kubelet_args: list[str] = []
        for d in (self.plugin_dir, self.data_root, self.kubelet_root, self.manifests):
            d.mkdir()

    # -- processes ---------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a logged process (logs/<name>.log); stop() stops it if the test did not."""
        if self.current:
            argv = release.adapt(argv)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process
        log.write(f"=== {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env={**self.env, **(env or {})}, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def stop_process(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            raise E2EError(f"{name} exited ({proc and proc.returncode}):\n{self.log_tail(name)}")
        return True

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_errors(self, name: str = "kubelet", needle: str = "flexvol") -> list[str]:
        """The component's own error lines that mention `needle`."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return []
        return [line for line in path.read_text(errors="replace").splitlines()
                if line.startswith("E") and needle in line]

    def errors_in_log(self, name: str = "kubelet", needle: str = "flexvol", lines: int = 15) -> str:
        """The last of those lines, newest first, for a failure message."""
        found = self.log_errors(name, needle)[-lines:][::-1]
        return f"{name} errors about {needle}:\n" + "\n".join(found)

    def run(self, argv: list[str], check: bool = True, timeout: float = 120,
            **kw: Any) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout,
                              check=False, **kw)
        if check and done.returncode:
            raise E2EError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    # -- container runtime --------------------------------------------------------------------

    def start_runtime(self) -> None:
        d = self.containerd_dir
        cni_conf = self.base / "cni" / "conf"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (self.base / "cni" / "bin").mkdir(exist_ok=True)
        # No pod uses it (hostNetwork only), but without any config the runtime reports the
        # network not ready and the node stays NotReady.
        (cni_conf / "10-unused.conflist").write_text(json.dumps(
            {"cniVersion": "0.4.0", "name": "unused", "plugins": [{"type": "loopback"}]}))
        config = d / "config.toml"
        d.mkdir(exist_ok=True)
        if self.current:
            config.write_text(release.containerd_config(d, self.socket, self.bin / "runc",
                                                        self.base / "cni" / "bin", cni_conf, PAUSE_IMAGE))
        else:
            config.write_text(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{self.bin}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.base}/cni/bin"
    conf_dir = "{cni_conf}"
""")
        self.spawn("containerd", [str(self.bin / "containerd"), "--config", str(config)])
        wait_for("containerd's socket", lambda: self.alive("containerd") and self.ctr("version"), 60,
                 on_timeout=lambda: self.log_tail("containerd"))
        for image in ("pause.tar", "app.tar"):
            self.ctr("images", "import", str(self.images / image))

    def ctr(self, *args: str, check: bool = True) -> str:
        return self.run([str(self.bin / "ctr"), "--address", str(self.socket), "--namespace", "k8s.io",
                         *args], check=check).stdout

    # -- control plane ------------------------------------------------------------------------

    def _openssl(self, *args: str) -> None:
        self.run(["openssl", *args], cwd=self.base / "pki")

    def make_certs(self) -> None:
        pki = self.base / "pki"
        pki.mkdir()
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                      "-days", "2", "-subj", "/CN=flexvol-e2e-ca")
        (pki / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
                                        "DNS:kubernetes.default,IP:10.96.0.1\n")
        for name, subject, ext in (("server", "/CN=kube-apiserver", ["-extfile", "server.ext"]),
                                   ("admin", "/O=system:masters/CN=flexvol-e2e-admin", [])):
            self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                          f"{name}.csr", "-subj", subject)
            self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                          "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *ext)
        self._openssl("genrsa", "-out", "sa.key", "2048")
        self._openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def start_control_plane(self) -> None:
        self.make_certs()
        pki = self.base / "pki"
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.api_port = api_port
        self.spawn("etcd", [str(self.bin / "etcd"), "--name", "e2e", "--data-dir", str(self.base / "etcd"),
                            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                            "--initial-cluster", f"e2e=http://127.0.0.1:{peer_port}",
                            "--listen-metrics-urls", "", "--log-level", "warn"])
        self.spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            "--insecure-port=0", f"--tls-cert-file={pki}/server.crt",
            f"--tls-private-key-file={pki}/server.key", f"--client-ca-file={pki}/ca.crt",
            "--authorization-mode=Node,RBAC", f"--service-account-key-file={pki}/sa.pub",
            f"--service-account-signing-key-file={pki}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
            f"--cert-dir={pki}", "--endpoint-reconciler-type=none", "--v=1"])
        kubeconfig = self.base / "admin.kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": f"https://127.0.0.1:{api_port}",
                                                     "certificate-authority": f"{pki}/ca.crt"}}],
            "users": [{"name": "admin", "user": {"client-certificate": f"{pki}/admin.crt",
                                                 "client-key": f"{pki}/admin.key"}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}]}))
        self.kubeconfig = kubeconfig
        wait_for("the apiserver", lambda: self.alive("etcd") and self.alive("kube-apiserver")
                 and self.kubectl("get", "--raw", "/readyz", check=False).strip() == "ok", 90,
                 on_timeout=lambda: self.log_tail("kube-apiserver"))
        self.spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", "--port=0", "--secure-port=0", "--leader-elect=false",
            f"--flex-volume-plugin-dir={self.plugin_dir}",
            f"--service-account-private-key-file={pki}/sa.key", f"--root-ca-file={pki}/ca.crt",
            "--attach-detach-reconcile-sync-period=2s", "--pvclaimbinder-sync-period=2s",
            "--controllers=*,-nodeipam,-service,-route,-cloud-node-lifecycle", "--v=2"])
        self.spawn("kube-scheduler", [
            str(self.bin / "kube-scheduler"), f"--kubeconfig={kubeconfig}", "--leader-elect=false",
            "--port=0", "--secure-port=0", "--v=1"])
        wait_for("the default service account",
                 lambda: self.alive("kube-controller-manager") and self.alive("kube-scheduler")
                 and self.kubectl("get", "serviceaccount", "default", check=False), 90,
                 on_timeout=lambda: self.log_tail("kube-controller-manager"))

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        assert self.kubeconfig, "no control plane"
        return self.run([str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                        check=check, input=input).stdout

    def get(self, kind: str, name: str, namespace: str = "default") -> dict:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(out) if out else {}

    def apply(self, *objects: dict) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                            "items": list(objects)}))

    # -- node ---------------------------------------------------------------------------------

    def _make_cgroup_root(self) -> None:
        # The kubelet insists its cgroup root exists in every hierarchy; one of our own keeps
        # every pod cgroup it makes in one place we can remove.
        for controller in CGROUP_BASE.iterdir():
            if controller.is_dir() and not controller.is_symlink() and (controller / "cgroup.procs").exists():
                (controller / self.name).mkdir(exist_ok=True)

    def start_kubelet(self, extra: list[str] | None = None) -> None:
        self._make_cgroup_root()
        self.kubelet_args = [
            str(self.bin / "kubelet"), f"--root-dir={self.kubelet_root}",
            f"--volume-plugin-dir={self.plugin_dir}", f"--cert-dir={self.kubelet_root}/pki",
            "--container-runtime=remote", f"--container-runtime-endpoint=unix://{self.socket}",
            "--cgroup-driver=cgroupfs", f"--cgroup-root={self.cgroup_root}", "--fail-swap-on=false",
            "--oom-score-adj=0", "--address=127.0.0.1", f"--port={free_port()}", "--read-only-port=0",
            f"--healthz-port={free_port()}", "--healthz-bind-address=127.0.0.1",
            "--sync-frequency=3s", "--file-check-frequency=2s", "--image-gc-high-threshold=100",
            "--image-gc-low-threshold=99", "--eviction-hard=", "--enforce-node-allocatable=",
            f"--hostname-override={self.node_name}", "--v=2", *(extra or [])]
        if self.current:
            config = release.kubelet_config(self.base / "kubelet-config.json")
            self.kubelet_args.insert(1, f"--config={config}")
        if self.kubeconfig:
            self.kubelet_args.append(f"--kubeconfig={self.kubeconfig}")
        else:
            self.kubelet_args.append(f"--pod-manifest-path={self.manifests}")
        self.spawn("kubelet", self.kubelet_args)
        if self.kubeconfig:
            wait_for("a Ready node", self._node_ready, 120, on_timeout=lambda: self.log_tail("kubelet"))
        else:
            wait_for("the kubelet", lambda: self.alive("kubelet") and (self.kubelet_root / "pods").exists(),
                     60, on_timeout=lambda: self.log_tail("kubelet"))

    def stop_kubelet(self) -> None:
        self.stop_process("kubelet")

    def restart_kubelet(self) -> None:
        """Start the kubelet again with the same flags (its log continues in kubelet.log)."""
        self.stop_process("kubelet")
        self.spawn("kubelet", self.kubelet_args)
        if self.kubeconfig:
            wait_for("the restarted kubelet to report Ready", self._node_ready, 120,
                     on_timeout=lambda: self.log_tail("kubelet"))

    def simulate_reboot(self) -> None:
        """Stop the node's kubelet and runtime and drop what a reboot drops (every mount and loop
        device of this node, and the containers), then start the node again."""
        self.stop_process("kubelet")
        self.stop_pods()
        self.stop_process("containerd")
        self._kill_strays(keep_control_plane=True)
        errors = self._unmount_all(self.kubelet_root) + self._unmount_all(self.containerd_dir)
        errors += self._detach_loops()
        if errors:
            raise E2EError(f"could not simulate a reboot: {errors}")
        self.start_runtime()
        self.restart_kubelet()

    def plugin_loaded(self, name: str = DRIVER_NAME) -> str:
        """What this release's kubelet logs when it loads the volume plugin `name`."""
        return release.plugin_loaded(self.current, name)

    def setup_succeeded(self, volume: str) -> str:
        """What this release's kubelet logs when it has set up `volume` for a pod."""
        return release.setup_succeeded(self.current, volume)

    def current_log(self, name: str) -> str:
        """The log of the component's latest start only."""
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return text[text.rfind("=== "):]

    def _node_ready(self) -> bool:
        self.alive("kubelet")
        node = self.get("node", self.node_name)
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node.get("status", {}).get("conditions", []))

    def install_driver(self, prefix: Path, attach: bool = False) -> None:
        """install.sh into our plugin dir; `prefix` (its virtual environment) may be shared."""
        argv = [str(REPO / "install.sh"), "--no-deps", "--prefix", str(prefix),
                "--plugin-dir", str(self.plugin_dir), "--data-root", str(self.data_root),
                "--bin-dir", str(self.base / "bin")]
        self.run([*argv, "--attach"] if attach else argv, timeout=600)
        (self.data_root / "log").mkdir(exist_ok=True)

    # -- what the driver and the kernel say ---------------------------------------------------

    def calls(self) -> list[dict]:
        path = self.data_root / "log" / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def verbs(self, volume: str | None = None) -> list[str]:
        return [c["verb"] for c in self.calls() if volume is None or c.get("volume") in (volume, "")]

    def loops(self) -> dict[str, str]:
        return {dev: backing for dev, backing in kernel.loop_devices().items()
                if backing.startswith(str(self.data_root))}

    def mounts(self, under: Path | None = None) -> list[kernel.Mount]:
        prefix = str(under or self.base)
        return [m for m in kernel.read_mounts() if m.mount_point.startswith(prefix)]

    def volume_mounts(self, volume: str) -> list[str]:
        """Mount points under the kubelet's root whose loop device is backed by `volume`'s file."""
        backing = str(self.data_root / "volumes" / f"{volume}.img")
        devices = {dev for dev, b in self.loops().items() if b == backing}
        numbers = {kernel.device_number(dev) for dev in devices}
        return [m.mount_point for m in self.mounts(self.kubelet_root) if m.device_number in numbers]

    # -- teardown -----------------------------------------------------------------------------

    def stop_pods(self) -> None:
        """Kill whatever containers are left, so no shim or container outlives the run."""
        if "containerd" not in self.procs:
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        time.sleep(1)
        for task in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "delete", "-f", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "delete", container, check=False)

    def stop(self) -> list[str]:
        """Stop everything and remove everything; returns what could not be cleaned."""
        errors: list[str] = []
        # What the tests started (controllers run as host processes) goes first, while the
        # API server they talk to is still there.
        for name in [n for n in self.procs if n not in CORE_PROCESSES]:
            self.stop_process(name)
        self.stop_process("kubelet")
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self.stop_process(name)
        self.stop_pods()
        self.stop_process("containerd")
        self._kill_strays()
        errors += self._unmount_all(self.base)
        errors += self._detach_loops()
        errors += self._remove_cgroups()
        errors += self._lift_write_guards()
        for path in FIXED_PATHS:
            if path not in self.existing_fixed and path.exists():
                with contextlib.suppress(OSError):
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if not errors:
            shutil.rmtree(self.base, ignore_errors=True)
            if self.base.exists():  # something nothing above knew of kept it
                errors.append(f"{self.base} could not be removed")
        self._lock.close()
        return errors

    def _unmount_all(self, under: Path) -> list[str]:
        errors = []
        for mount in sorted(self.mounts(under), key=lambda m: len(m.mount_point), reverse=True):
            done = subprocess.run(["umount", "-l", mount.mount_point], capture_output=True, check=False)
            if done.returncode:
                errors.append(f"umount {mount.mount_point}: {done.stderr.decode().strip()}")
        return errors

    def _lift_write_guards(self) -> list[str]:
        """Pod volume dirs the driver guarded and a failed test left unmounted (README, Reboots):
        without this the temporary root cannot be removed."""
        errors = []
        # FlexVolume: pods/<uid>/volumes/<driver>/<name>; CSI: .../kubernetes.io~csi/<pv>/mount
        # and the staging dir plugins/kubernetes.io/csi/<driver>/<hash>/globalmount.
        targets = [*self.kubelet_root.glob("pods/*/volumes/*/*"),
                   *self.kubelet_root.glob("pods/*/volumes/kubernetes.io~csi/*/mount"),
                   *self.kubelet_root.glob("plugins/kubernetes.io/csi/*/*/globalmount")]
        for target in targets:
            try:
                guard.lift_write_guard(str(target))
            except FlexvolError as error:
                errors.append(str(error))
        return errors

    def stacked_loops(self) -> list[str]:
        """Loop devices over one of this node's volume loop devices: the kubelet holds a raw
        block volume's device open through one (its backing file is the device node, which
        /sys shows as "/" once unmounted), and it keeps the one under it attached."""
        ours = self.loops()
        numbers = {os.stat(device).st_rdev for device in ours if os.path.exists(device)}
        return [device for device, backing in kernel.loop_devices().items() if device not in ours
                and _maybe_device_node(backing) and _backing_rdev(device) in numbers]

    def _detach_loops(self) -> list[str]:
        errors = []
        for device in [*self.stacked_loops(), *self.loops()]:
            done = subprocess.run(["losetup", "-d", device], capture_output=True, check=False)
            if done.returncode:
                errors.append(f"losetup -d {device}: {done.stderr.decode().strip()}")
        return errors

    def _kill_strays(self, keep_control_plane: bool = False) -> None:
        """Shims started for our containerd (their command line names our socket)."""
        marker = str(self.base).encode()
        keep = {p.pid for p in self.procs.values()} if keep_control_plane else set()
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                cmdline = (pid_dir / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and int(pid_dir.name) not in keep:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def _remove_cgroups(self) -> list[str]:
        errors = []
        roots = [c / self.name for c in CGROUP_BASE.iterdir() if (c / self.name).is_dir()]
        roots += [p for p in CGROUP_BASE.glob("*/k8s.io") if p not in self.existing_k8s_cgroups]
        for root in roots:
            children = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                              reverse=True)
            for d in [*children, root]:
                for _ in range(20):
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError as error:
                        last = error
                        time.sleep(0.25)
                else:
                    errors.append(f"rmdir {d}: {last}")
        return errors
