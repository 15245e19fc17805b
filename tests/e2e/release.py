"""What differs between the Kubernetes releases the end-to-end suite can run.

`current` (the default) is a recent upstream release built by scripts/k8s-current-build.sh from
the Go module proxy (containerd 2.x, config version 3). `1.20`, the oldest release tested, is
built by scripts/e2e-build.sh from Debian's source package (containerd 1.6, config version 2).
Choose with FLEXVOL_E2E_K8S=1.20.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPTS = {"1.20": REPO / "scripts" / "e2e-build.sh",
                 "current": REPO / "scripts" / "k8s-current-build.sh"}
# Flags the 1.20 components take that a current release has dropped (insecure serving went in
# 1.24, the dockershim switch in 1.27).
REMOVED_FLAGS = ("--insecure-port=", "--port=0", "--container-runtime=")


def chosen() -> str:
    """The release FLEXVOL_E2E_K8S names (default current)."""
    release = os.environ.get("FLEXVOL_E2E_K8S", "current")
    if release not in BUILD_SCRIPTS:
        raise SystemExit(f"FLEXVOL_E2E_K8S={release!r}: choose one of {', '.join(BUILD_SCRIPTS)}")
    return release


def is_current(binaries: Path) -> bool:
    """Whether a built directory holds a current release (its k8s-version file says which)."""
    version = (binaries / "k8s-version").read_text().strip()
    upstream = version.split("really")[-1].split("-")[0]
    major, minor = (int(part) for part in upstream.split(".")[:2])
    return (major, minor) >= (1, 27)


def plugin_loaded(current: bool, name: str) -> str:
    """The kubelet's log line for a volume plugin it loaded (structured logging since 1.21)."""
    return f'"Loaded volume plugin" pluginName="{name}"' if current else f'Loaded volume plugin "{name}"'


def setup_succeeded(current: bool, volume: str) -> str:
    """The kubelet's log text for a volume set up for a pod (quotes escaped since 1.21)."""
    quoted = f'\\"{volume}\\"' if current else f'"{volume}"'
    return f"MountVolume.SetUp succeeded for volume {quoted}"


def adapt(argv: list[str]) -> list[str]:
    """A 1.20 command line for a current release: removed flags dropped, and only the cloud
    controllers the controller-manager still has (service, route and cloud-node-lifecycle
    live in the cloud-controller-manager now) turned off."""
    argv = [arg for arg in argv if not arg.startswith(REMOVED_FLAGS)]
    return ["--controllers=*,-nodeipam" if arg.startswith("--controllers=") else arg for arg in argv]


def kubelet_config(path: Path) -> Path:
    """The settings a current kubelet takes only from its config file; the rest stay flags,
    which override the file."""
    path.write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # The suite's machines may still mount cgroup v1 hierarchies; since 1.35 the kubelet
        # refuses them unless told otherwise.
        "failCgroupV1": False,
        # A config file brings the file's defaults (webhook authentication and authorization,
        # which a standalone kubelet cannot use); these are the flag defaults 1.20 runs with.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
    }))
    return path


def containerd_config(d: Path, socket: Path, runc: Path, cni_bin: Path, cni_conf: Path,
                      pause_image: str) -> str:
    """containerd 2.x's config (version 3: the CRI plugin is split into images and runtime)."""
    return f"""version = 3
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins.'io.containerd.internal.v1.opt']
  path = "{d}/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause_image}"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"
"""
