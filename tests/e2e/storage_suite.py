"""Kubernetes' own storage suite (k8s.io/kubernetes test/e2e/storage/external, the one CSI
drivers are certified with) against `flexvol csi` on the current cluster (tests/e2e/harness.py):
the plugin registered with the kubelet, csi-provisioner, csi-resizer, csi-snapshotter and the
snapshot-controller beside it as host processes (tests/e2e/csi.py, tests/e2e/sidecars.py), and
e2e.test (scripts/k8s-e2e-suite-build.sh) given tests/e2e/storage/flexvol-csi-driver.yaml.

    .venv/bin/python -m tests.e2e.storage_suite            # the quick subset (SUBSET)
    .venv/bin/python -m tests.e2e.storage_suite --all      # every External Storage spec
    .venv/bin/python -m tests.e2e.storage_suite --list     # what would run; no cluster
    .venv/bin/python -m tests.e2e.storage_suite --focus REGEX [--skip REGEX]

Needs root; waits for /run/flexvol-e2e.lock like every cluster of the harness. Two things the
one-node cluster lacks are provided for the suite only: a pod network (pods get an address from
tests/e2e/storage/pod-network and are reached only through the kubelet) and the suite's images
(its busybox and nginx names are given to the offline busybox image, every such pod gets its
command from the test; glibc-dns-testing's to that image with GNU dd; agnhost is built from the
release's sources, scripts/k8s-e2e-agnhost-build.sh). The ginkgo JSON report and logs stay in
--report-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.e2e.harness import APP_IMAGE, REPO, Cluster

SUITE_BUILD = REPO / "scripts" / "k8s-e2e-suite-build.sh"
AGNHOST_BUILD = REPO / "scripts" / "k8s-e2e-agnhost-build.sh"
STORAGE_DIR = REPO / "tests" / "e2e" / "storage"
DRIVER_FILE = STORAGE_DIR / "flexvol-csi-driver.yaml"
NETWORK_PLUGIN = STORAGE_DIR / "pod-network"
NETWORK_TYPE = "flexvol-e2e-pod-network"
DRIVER = "loop.flexvol.io"
FOCUS_ALL = r"External.Storage.*loop\.flexvol\.io"
# Disruptive specs stop the kubelet over SSH, which this cluster has no way to do.
SKIP_ALL = r"\[Disruptive\]"
# One spec per kind of thing the plugin does, to fit a few minutes on 2 cores.
SUBSET = [
    r"Dynamic PV \(ext4\)\] volumes should store data",
    r"Dynamic PV \(block volmode\)\] volumes should store data",
    r"Dynamic PV \(ext4\)\] volumes should allow exec of files on the volume",
    # xfs: online ext4 growth needs CAP_SYS_RESOURCE, which a host without it in its bounding
    # set cannot give the plugin (README, CSI: Expansion).
    r"Dynamic PV \(xfs\)\] volume-expand should resize volume when PVC is edited while pod",
    r"Dynamic PV \(default fs\)\] provisioning should provision storage with snapshot data source \[",
    r"CSI Ephemeral-volume \(default fs\)\] ephemeral should create read/write inline ephemeral volume",
    # CSIStorageCapacity, subPath (agnhost's pods; a subpath escaping the volume is refused), two
    # pods on one volume, a clone, a Block claim refused to a filesystem pod, offline growth.
    r"Dynamic PV \(default fs\)\] capacity provides storage capacity information",
    r"Dynamic PV \(default fs\)\] subPath should support existing directory$",
    r"Dynamic PV \(default fs\)\] subPath should fail if subpath with backstepping is outside the volume",
    r"Dynamic PV \(ext4\)\] multiVolume should concurrently access the single volume from pods on the same",
    r"Dynamic PV \(block volmode\)\] multiVolume should concurrently access the volume and its clone",
    r"Dynamic PV \(block volmode\)\] volumeMode should fail to use a volume in a pod with mismatched mode",
    r"Dynamic PV \(xfs\)\] volume-expand Verify if offline PVC expansion works",
]
# The suite's images whose pods always get a command; the offline busybox image runs them.
BUSYBOX_LIKE = re.compile(r"/e2e-test-images/(busybox|nginx):")
# multivolume's pods: `dd oflag=nocache`, which only GNU dd has (busybox's sh runs its own dd
# applet, so the shell is the host's dash): busybox with the host's dd and dash over it.
GLIBC = re.compile(r"/e2e-test-images/glibc-dns-testing:")
GLIBC_TOOLS = (("/usr/bin/dd", "/bin/dd"), ("/bin/dash", "/bin/sh"))
IMAGE_TOOL = REPO / "scripts" / "e2e_image.py"
# agnhost, built from the release's sources (scripts/k8s-e2e-agnhost-build.sh), under each name.
AGNHOST = re.compile(r"/e2e-test-images/agnhost:")


def subset_focus() -> str:
    return FOCUS_ALL + ".*(" + "|".join(SUBSET) + ")"


def build_suite(script: Path = SUITE_BUILD) -> Path:
    """e2e.test (or agnhost's image), built once per release (the script's last line is its path)."""
    done = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{script.name} failed ({done.returncode}); its log is above")
    return Path(done.stdout.strip().splitlines()[-1])


def suite_argv(suite: Path, *, focus: str, skip: str, report_dir: Path, kubeconfig: Path | None = None,
               kubelet_root: Path | None = None, kubectl: Path | None = None, dry_run: bool = False,
               timeout: str = "2h") -> list[str]:
    argv = [str(suite), f"-ginkgo.focus={focus}", f"-ginkgo.timeout={timeout}", "-ginkgo.no-color",
            "-ginkgo.v", f"-storage.testdriver={DRIVER_FILE}", f"-repo-root={REPO}",
            f"-report-dir={report_dir}", f"-ginkgo.json-report={report_dir / 'report.json'}",
            "-disable-log-dump"]
    if skip:
        argv.append(f"-ginkgo.skip={skip}")
    if dry_run:
        argv.append("-ginkgo.dry-run")
    if kubeconfig:
        argv.append(f"-kubeconfig={kubeconfig}")
    if kubelet_root:
        argv.append(f"-kubelet-root-dir={kubelet_root}")
    if kubectl:
        argv.append(f"-kubectl-path={kubectl}")
    return argv


def suite_images(suite: Path, pattern: re.Pattern = BUSYBOX_LIKE) -> list[str]:
    """The suite's image names the offline busybox (or agnhost) image stands in for."""
    done = subprocess.run([str(suite), "-list-images"], capture_output=True, text=True, check=True)
    return [name for name in done.stdout.split() if pattern.search(name)]


def glibc_image(app: Path, name: str, work: Path) -> Path:
    """The busybox image `app` with GLIBC_TOOLS (and their libraries) over it, named `name`."""
    image = app
    for index, (tool, path) in enumerate(GLIBC_TOOLS):
        out = work / f"glibc-{index}.tar"
        subprocess.run([sys.executable, str(IMAGE_TOOL), "--over", str(image), str(out), name, tool, path,
                        "--libs"], check=True)
        image = out
    return image


def load_images(cluster: Cluster, suite: Path, agnhost: Path) -> None:
    for name in suite_images(suite):
        cluster.ctr("images", "tag", "--force", APP_IMAGE, name)
    for name in suite_images(suite, GLIBC):
        cluster.ctr("images", "import", str(glibc_image(cluster.images / "app.tar", name, cluster.base)))
    cluster.ctr("images", "import", str(agnhost))
    built = (agnhost.parent / "image").read_text().strip()
    for name in suite_images(suite, AGNHOST):
        if name != built:
            cluster.ctr("images", "tag", "--force", built, name)


def install_pod_network(cluster: Cluster) -> None:
    """Before start_runtime: the plugin and a network config that sorts before the harness's
    own (containerd uses the first), leases under the cluster's root."""
    conf, bin_dir = cluster.base / "cni" / "conf", cluster.base / "cni" / "bin"
    conf.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in (NETWORK_TYPE, "loopback"):  # containerd adds a loopback network of its own
        plugin = bin_dir / name
        plugin.write_bytes(NETWORK_PLUGIN.read_bytes())
        plugin.chmod(0o755)
    (conf / "05-pods.conflist").write_text(json.dumps(
        {"cniVersion": "0.4.0", "name": "flexvol-e2e-pods",
         "plugins": [{"type": NETWORK_TYPE, "leaseDir": str(cluster.base / "cni" / "leases")}]}))


def private_netns(config: str) -> str:
    """containerd's config with the pods' network namespaces mounted under its own state dir
    (inside the cluster's root, unmounted with it) instead of the host's /var/run/netns."""
    anchor = "  restrict_oom_score_adj = true\n"
    if anchor not in config:
        raise SystemExit("the harness's containerd config has no CRI runtime section to extend")
    return config.replace(anchor, anchor + "  netns_mounts_under_state_dir = true\n", 1)


def start_runtime(cluster: Cluster) -> None:
    """The harness's containerd (hostNetwork pods only, so it never set this) with private_netns."""
    from tests.e2e import release

    if not cluster.current:
        raise SystemExit("the storage suite runs on the current release only (FLEXVOL_E2E_K8S=current)")
    original = release.containerd_config
    release.containerd_config = lambda *args, **kw: private_netns(original(*args, **kw))  # type: ignore[assignment]
    try:
        cluster.start_runtime()
    finally:
        release.containerd_config = original  # type: ignore[assignment]


def summarize(report: Path) -> dict[str, list[tuple[str, str]]]:
    """Ginkgo's JSON report -> state -> [(spec, message)] for the driver's specs that were
    selected (specs the focus left out are not listed)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for suite in json.loads(report.read_text()):
        for spec in suite.get("SpecReports") or []:
            name = " ".join([*(spec.get("ContainerHierarchyTexts") or []), spec.get("LeafNodeText", "")])
            if DRIVER not in name or spec.get("LeafNodeType") != "It":
                continue
            message = (spec.get("Failure") or {}).get("Message", "")
            state = spec.get("State", "?")
            if state == "skipped" and not message:
                continue  # filtered out by focus/skip
            found.setdefault(state, []).append((name.split(f"[Driver: {DRIVER}] ", 1)[-1],
                                                message.strip().splitlines()[0] if message else ""))
    return found


def format_summary(found: dict[str, list[tuple[str, str]]]) -> str:
    lines = [", ".join(f"{state} {len(specs)}" for state, specs in sorted(found.items()))]
    for state, specs in sorted(found.items()):
        for name, message in specs:
            reason = f"\n      {message}" if message and state != "passed" else ""
            lines.append(f"  {state}: {name}{reason}")
    return "\n".join(lines)


def start_csi(cluster: Cluster, bin_dir: Path, running: list) -> None:
    """The CSIDriver, CRDs, the plugin and its sidecars; each sidecar goes into `running` as it
    starts, so the caller stops those a later failure leaves behind."""
    from tests.e2e.csi import (
        CSI_DIR,
        NAMESPACE,
        install_snapshot_crds,
        start_plugin,
        start_resizer,
        start_sidecar,
    )

    cluster.kubectl("apply", "-f", str(CSI_DIR / "csidriver.yaml"))
    cluster.kubectl("create", "namespace", NAMESPACE)
    install_snapshot_crds(cluster, bin_dir)
    start_plugin(cluster)
    for name in ("csi-provisioner", "snapshot-controller", "csi-snapshotter"):
        running.append(start_sidecar(cluster, name, bin_dir))
    start_resizer(cluster, bin_dir)


MANAGED_BY = "snapshot.storage.kubernetes.io/managed-by"


def label_contents(cluster: Cluster, stop: threading.Event) -> None:
    """What an operator does for a pre-provisioned VolumeSnapshotContent under distributed
    snapshotting: the node-deployed csi-snapshotter watches only contents labelled MANAGED_BY
    with its node, and the snapshot-controller labels only the contents it makes from a PV."""
    while not stop.wait(2):
        try:
            listed = json.loads(cluster.kubectl("get", "volumesnapshotcontents", "-o", "json"))
            for content in listed["items"]:
                labels = content["metadata"].get("labels") or {}
                if content["spec"].get("driver") == DRIVER and MANAGED_BY not in labels:
                    cluster.kubectl("label", "volumesnapshotcontent", content["metadata"]["name"],
                                    f"{MANAGED_BY}={cluster.node_name}", check=False)
        except Exception as error:  # the next round tries again
            print(f"labelling snapshot contents: {error}", file=sys.stderr)


def lift_csi_guards(cluster: Cluster) -> None:
    """CSI target and staging dirs a failed spec left guarded (README, Reboots), so the
    cluster's root can be removed."""
    from flexvol.core import guard

    for target in [*cluster.kubelet_root.glob("pods/*/volumes/kubernetes.io~csi/*/mount"),
                   *cluster.kubelet_root.glob("plugins/kubernetes.io/csi/*/*/globalmount")]:
        try:
            guard.lift_write_guard(str(target))
        except Exception as error:  # reported; the rest is still cleaned
            print(f"lifting the write guard of {target}: {error}", file=sys.stderr)


def run_on_cluster(suite: Path, focus: str, skip: str, report_dir: Path, timeout: str) -> int:
    from tests.conftest import TEST_PREFIX
    from tests.e2e import sidecars
    from tests.e2e.harness import build

    binaries, bin_dir, agnhost = build(), sidecars.build(), build_suite(AGNHOST_BUILD)
    waited = time.monotonic()
    cluster = Cluster(binaries, f"{TEST_PREFIX}e2e-storage-suite-")  # waits for the machine lock
    print(f"machine lock after {time.monotonic() - waited:.0f}s; cluster root {cluster.base}", flush=True)
    running: list = []
    stop_labelling = threading.Event()
    code = 1
    prefix = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}e2e-opt-", dir="/tmp"))
    try:
        started = time.monotonic()
        cluster.install_driver(prefix)  # `flexvol` in the cluster's bin dir, as the CSI scenarios
        install_pod_network(cluster)
        start_runtime(cluster)
        load_images(cluster, suite, agnhost)
        cluster.start_control_plane()
        cluster.start_kubelet()
        start_csi(cluster, bin_dir, running)
        print(f"cluster, plugin and sidecars up in {time.monotonic() - started:.0f}s", flush=True)
        assert cluster.kubeconfig
        argv = suite_argv(suite, focus=focus, skip=skip, report_dir=report_dir, kubeconfig=cluster.kubeconfig,
                          kubelet_root=cluster.kubelet_root, kubectl=cluster.bin / "kubectl", timeout=timeout)
        started = time.monotonic()
        labeller = threading.Thread(target=label_contents, args=(cluster, stop_labelling), daemon=True)
        labeller.start()
        with open(report_dir / "e2e.log", "w") as log:
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False,
                                  env={**cluster.env, "KUBECONFIG": str(cluster.kubeconfig)}).returncode
        stop_labelling.set()
        labeller.join()
        print(f"e2e.test exited {code} after {time.monotonic() - started:.0f}s", flush=True)
    finally:
        stop_labelling.set()
        for sidecar in running:
            if sidecar.log_path.exists():
                (report_dir / sidecar.log_path.name).write_bytes(sidecar.log_path.read_bytes())
        sidecars.stop_all(running)
        for name in ("csi-resizer", "csi"):
            cluster.stop_process(name)
        for name in ("csi", "csi-resizer", "kubelet", "containerd"):
            log = cluster.logs / f"{name}.log"
            if log.exists():
                (report_dir / log.name).write_bytes(log.read_bytes())
        lift_csi_guards(cluster)
        errors = cluster.stop()
        shutil.rmtree(prefix, ignore_errors=True)
        if errors:
            print(f"cleanup of {cluster.base} failed: {errors}", file=sys.stderr)
            code = code or 1
    return code


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.storage_suite",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every External Storage spec of the driver")
    parser.add_argument("--focus", help="a ginkgo focus regex (default: the quick subset)")
    parser.add_argument("--skip", default=SKIP_ALL, help=f"a ginkgo skip regex (default {SKIP_ALL!r})")
    parser.add_argument("--list", action="store_true", help="list the selected specs (dry run, no cluster)")
    parser.add_argument("--report-dir", type=Path, help="default: a new /tmp/flexvol-storage-suite-* dir")
    parser.add_argument("--timeout", default="2h", help="the whole suite's ginkgo timeout")
    options = parser.parse_args(args)
    focus = options.focus or (FOCUS_ALL if options.all else subset_focus())
    report_dir = options.report_dir or Path(f"/tmp/flexvol-storage-suite-{time.strftime('%Y%m%d-%H%M%S')}")
    report_dir.mkdir(parents=True, exist_ok=True)
    suite = build_suite()
    if options.list:
        argv = suite_argv(suite, focus=focus, skip=options.skip, report_dir=report_dir, dry_run=True)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        found = summarize(report_dir / "report.json")
        for _state, specs in sorted(found.items()):
            for name, _message in specs:
                print(name)
        print(f"{sum(len(s) for s in found.values())} specs selected", file=sys.stderr)
        return 0
    if os.geteuid() != 0:
        print("the storage suite starts a cluster: run it as root", file=sys.stderr)
        return 2
    code = run_on_cluster(suite, focus, options.skip, report_dir, options.timeout)
    report = report_dir / "report.json"
    if report.exists():
        print(format_summary(summarize(report)))
    print(f"report, e2e.log and component logs in {report_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
