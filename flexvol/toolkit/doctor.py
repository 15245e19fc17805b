"""Is this node ready for the driver? Each check answers PASS, WARN or FAIL with a fix.

Toolkit only (reads the running kubelet with psutil); the driver never imports it.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from flexvol.core.config import TOOL_PATH, Config
from flexvol.core.filesystems import FILESYSTEMS
from flexvol.toolkit.callrun import DEFAULT_PLUGIN_DIR, call_driver, installed_driver

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
DEFAULT_KUBELET_CONFIG_KEY = "volumePluginDir:"
REQUIRED_TOOLS = ("losetup", "blkid", "mount", "umount", "mkfs.ext4", "resize2fs", "e2fsck")
ST_RDONLY, ST_NOEXEC = 1, 8


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def find_tool(name: str, tool_path: str) -> str | None:
    for directory in tool_path.split(":"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def check_tools(tool_path: str = TOOL_PATH) -> list[Check]:
    checks = []
    missing = [tool for tool in REQUIRED_TOOLS if find_tool(tool, tool_path) is None]
    checks.append(Check("tools", FAIL if missing else PASS,
                        f"missing: {', '.join(missing)}" if missing else "losetup, blkid, mkfs.ext4, "
                        "resize2fs, e2fsck found",
                        "apt-get install util-linux mount e2fsprogs" if missing else ""))
    for name, filesystem in FILESYSTEMS.items():
        if name.startswith("ext"):
            continue
        tools = [filesystem.mkfs[0], filesystem.grow[0]]
        absent = [tool for tool in tools if find_tool(tool, tool_path) is None]
        checks.append(Check(f"tools for {name}", WARN if absent else PASS,
                            f"missing: {', '.join(absent)} (volumes with fsType {name} will fail)"
                            if absent else ", ".join(tools) + " found",
                            f"install the {name} tools ({name}progs)" if absent else ""))
    return checks


def check_kernel(proc_filesystems: str = "/proc/filesystems") -> list[Check]:
    try:
        with open(proc_filesystems) as handle:
            known = {line.split()[-1] for line in handle if line.strip()}
    except OSError:
        known = set()
    checks = [Check("ext4 in kernel", PASS if "ext4" in known else FAIL,
                    "ext4 is registered" if "ext4" in known else "ext4 is not in /proc/filesystems",
                    "" if "ext4" in known else "modprobe ext4")]
    others = [name for name in FILESYSTEMS if not name.startswith("ext") and name not in known]
    # xfs and btrfs may be modules loaded on first mount; a WARN, not a FAIL.
    checks.append(Check("other filesystems", WARN if others else PASS,
                        f"not loaded yet: {', '.join(others)}" if others else "xfs and btrfs registered",
                        f"modprobe {' '.join(others)}" if others else ""))
    present = os.path.exists("/dev/loop-control")
    checks.append(Check("/dev/loop-control", PASS if present else FAIL,
                        "present" if present else "missing: loop devices cannot be allocated",
                        "" if present else "modprobe loop"))
    return checks


def kubelet_plugin_dir() -> tuple[str, str]:
    """The running kubelet's volume plugin dir and where it came from."""
    import psutil

    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] != "kubelet":
            continue
        argv = process.info["cmdline"] or []
        config_file = ""
        for index, arg in enumerate(argv):
            for flag in ("--volume-plugin-dir", "--config"):
                value = ""
                if arg.startswith(flag + "="):
                    value = arg.split("=", 1)[1]
                elif arg == flag and index + 1 < len(argv):
                    value = argv[index + 1]
                if value and flag == "--volume-plugin-dir":
                    return value, "kubelet command line"
                if value:
                    config_file = value
        if config_file:
            found = _from_config(config_file)
            if found:
                return found, f"kubelet config {config_file}"
        return DEFAULT_PLUGIN_DIR, "kubelet default"
    return DEFAULT_PLUGIN_DIR, "default (no kubelet running)"


def _from_config(path: str) -> str:
    try:
        with open(path) as handle:
            for line in handle:
                if line.strip().startswith(DEFAULT_KUBELET_CONFIG_KEY):
                    return line.split(":", 1)[1].strip().strip("'\"")
    except OSError:
        pass
    return ""


def check_plugin_dir(plugin_dir: str, source: str) -> list[Check]:
    if not os.path.isdir(plugin_dir):
        return [Check("plugin dir", FAIL, f"{plugin_dir} ({source}) does not exist",
                      f"mkdir -p {plugin_dir} and run install.sh --plugin-dir {plugin_dir}")]
    flags = os.statvfs(plugin_dir).f_flag
    if flags & ST_NOEXEC:
        return [Check("plugin dir", FAIL, f"{plugin_dir} ({source}) is on a noexec filesystem: "
                      "the kubelet cannot run the driver",
                      "remount it exec, or point the kubelet's --volume-plugin-dir elsewhere")]
    if flags & ST_RDONLY:
        return [Check("plugin dir", FAIL, f"{plugin_dir} ({source}) is read-only",
                      "use a writable --volume-plugin-dir (e.g. under /var/lib/kubelet)")]
    if not os.access(plugin_dir, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return [Check("plugin dir", FAIL, f"{plugin_dir} ({source}) is not writable by uid "
                      f"{os.geteuid()}: the driver cannot be installed there by this user",
                      "run as root (sudo flexvol doctor)")]
    return [Check("plugin dir", PASS, f"{plugin_dir} ({source}) is writable and exec")]


def check_driver(plugin_dir: str, timeout: float = 30) -> list[Check]:
    driver = installed_driver(plugin_dir)
    if not os.access(driver, os.X_OK):
        return [Check("driver init", FAIL, f"{driver} is not installed or not executable",
                      f"./install.sh --plugin-dir {plugin_dir}")]
    result = call_driver(driver, ["init"], timeout=timeout)
    if result.reply.get("status") != "Success":
        return [Check("driver init", FAIL, f"{shlex.join([driver, 'init'])} answered {result.output[:200]!r}",
                      "reinstall with install.sh; see 'flexvol call init'")]
    capabilities = " ".join(f"{key}={str(value).lower()}"
                            for key, value in (result.reply.get("capabilities") or {}).items())
    return [Check("driver init", PASS, f"{driver}: Success, {capabilities}")]


def check_propagation(kubelet_root: str, mountinfo: str = "/proc/self/mountinfo") -> list[Check]:
    """The kubelet root must sit on a shared mount, or pods' mounts do not propagate."""
    best = ("", "")
    try:
        with open(mountinfo) as handle:
            for line in handle:
                fields = line.split(" ")
                point = fields[4]
                separator = fields.index("-", 6)
                inside = kubelet_root == point or kubelet_root.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best[0]):
                    best = (point, " ".join(fields[6:separator]))
    except (OSError, ValueError, IndexError):
        return [Check("mount propagation", WARN, "cannot read mountinfo")]
    point, optional = best
    if "shared:" in optional:
        return [Check("mount propagation", PASS, f"{kubelet_root} is on the shared mount {point}")]
    return [Check("mount propagation", WARN, f"{kubelet_root} is on {point}, which is not shared",
                  f"mount --make-rshared {point}")]


def check_privileges() -> list[Check]:
    """The driver runs as root; checks run as another user cannot vouch for what root can do."""
    if os.geteuid() == 0:
        return [Check("privileges", PASS, "running as root, as the kubelet runs the driver")]
    return [Check("privileges", FAIL, f"running as uid {os.geteuid()}: the driver runs as root, and loop "
                  "devices, mounts, the plugin dir and the data root need it; the checks below cannot "
                  "vouch for them", "run as root (sudo flexvol doctor)")]


def check_data_root(config: Config) -> list[Check]:
    from flexvol.toolkit import dataroot

    found = dataroot.problem(config)
    if found is not None:
        return [Check("data root", FAIL, found.message, found.hint)]
    return [Check("data root", PASS, f"{config.data_root} is readable")]


def check_space(config: Config) -> list[Check]:
    """The pool as the driver counts it (budget.py): FAIL when thin volumes were promised more
    than is free (their writes fail once it fills), WARN when it runs low."""
    from flexvol.core import budget
    from flexvol.core.errors import FlexvolError
    from flexvol.core.quantity import human_bytes

    try:
        pool = budget.measure(config)
    except FlexvolError as error:
        return [Check("pool space", FAIL, error.message, error.hint)]
    except OSError as error:
        return [Check("pool space", FAIL, f"cannot measure the pool under {config.data_root}: "
                      f"{error.strerror}", "run as root (sudo flexvol doctor)")]
    figures = (f"{human_bytes(pool.free_bytes)} free of {human_bytes(pool.total_bytes)} under "
               f"{pool.path}; thin volumes promised {human_bytes(pool.promised_bytes)} not yet "
               f"written; new or grown volumes may take {human_bytes(pool.available_bytes)}")
    if pool.unbacked_bytes:
        return [Check("pool space", FAIL,
                      f"{figures}: thin volumes were promised {human_bytes(pool.unbacked_bytes)} "
                      "more than is free, their writes fail with I/O errors once the pool is full",
                      "free space on the pool filesystem now, or move volumes to another node")]
    if pool.low:
        return [Check("pool space", WARN, f"{figures}: under {budget.LOW_FRACTION:.0%} of the pool free",
                      "free space or move the data root (install.sh --data-root)")]
    return [Check("pool space", PASS, figures)]


CAP_SYS_RESOURCE = 24


def effective_capabilities(status_text: str) -> int | None:
    """The CapEff mask from /proc/<pid>/status text, None when absent or unreadable."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            try:
                return int(line.split()[1], 16)
            except (IndexError, ValueError):
                return None
    return None


def check_online_growth(status_path: str = "/proc/self/status") -> list[Check]:
    """ext4 grows online only with CAP_SYS_RESOURCE (the kernel's ext4_resize_begin): without
    it a resize of a mounted ext4 volume grows the file but not the filesystem."""
    try:
        with open(status_path) as handle:
            mask = effective_capabilities(handle.read())
    except OSError:
        mask = None
    if mask is None:
        return [Check("online ext4 growth", WARN, f"cannot read CapEff from {status_path}")]
    if mask >> CAP_SYS_RESOURCE & 1:
        return [Check("online ext4 growth", PASS, "CAP_SYS_RESOURCE is effective: mounted ext4 "
                      "volumes grow online")]
    return [Check("online ext4 growth", WARN,
                  "CAP_SYS_RESOURCE is not in the effective set: resizing a mounted ext4 volume "
                  "fails in resize2fs (its filesystem then grows at its next mount, offline)",
                  "run the driver and toolkit with CAP_SYS_RESOURCE (e.g. a privileged node agent, "
                  "not a user namespace), or use xfs for volumes that must grow online")]


def run_checks(config: Config, *, plugin_dir: str | None = None, kubelet_root: str = "/var/lib/kubelet",
               tool_path: str = TOOL_PATH) -> list[Check]:
    if plugin_dir:
        source = "given"
    else:
        plugin_dir, source = kubelet_plugin_dir()
    checks = [*check_privileges(), *check_tools(tool_path), *check_kernel(),
              *check_plugin_dir(plugin_dir, source)]
    if checks[-1].status == PASS:
        checks.extend(check_driver(plugin_dir))
    checks.extend(check_propagation(kubelet_root))
    checks.extend(check_online_growth())
    root = check_data_root(config)
    checks.extend(root)
    # An unreadable root would measure as an empty pool: no figures rather than wrong ones.
    if root[0].status == PASS:
        checks.extend(check_space(config))
    return checks

