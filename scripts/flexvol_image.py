"""Builds the image deploy/ runs (flexvol:<version>) offline, with no registry and no Docker engine.

    .venv/bin/python scripts/flexvol_image.py            # prints the tarball's path last
    ctr -n k8s.io images import <that path>               # on each node

Two layers: a Debian root filesystem made by `debootstrap --variant=minbase --include=python3`
from the mirror apt already uses, and flexvol with its dependencies (a wheel of this checkout,
installed with pip for the image's Python, wheels only) under /usr/local. Packed as a
docker-archive tarball. Cached under $FLEXVOL_E2E_CACHE (default /var/cache/flexvol-e2e)/image:
the root filesystem keyed by the Debian package set (suite, mirror, packages and the versions
the mirror offers), the image by that and a digest of flexvol's source, so a later run takes
seconds. Needs root and debootstrap (scripts/deps.sh test installs it).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_image import write_archive

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
INCLUDE = ["python3"]
# Bump when the way the root filesystem is made changes (its key cannot see this file's edits).
ROOTFS_RECIPE = "1"
# Trimmed from the root filesystem: nothing at run time reads them.
TRIM = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists",
        "var/cache/apt", "var/cache/debconf/templates.dat-old", "var/log"]
ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}


def log(message: str) -> None:
    print(f"flexvol-image: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kw: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode:
        raise SystemExit(f"flexvol-image: {' '.join(argv)} failed ({done.returncode}):\n"
                         f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def mirror(suite: str) -> str:
    """The URI apt fetches `suite` from (the machine's own sources)."""
    targets = run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE) $(TARGET_OF)"])
    for line in targets.splitlines():
        uri, release, kind = line.split()
        if release == suite and kind == "deb":
            return uri
    raise SystemExit(f"flexvol-image: apt has no source for {suite}; add one or pass --mirror")


def offered_versions(packages: list[str], uri: str, suite: str) -> list[str]:
    """What the mirror offers for `packages` in `suite`, per apt's lists (updated if empty)."""
    def lookup() -> list[str]:
        found = []
        for line in run(["apt-cache", "madison", *packages]).splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2].startswith(uri.rstrip("/") + " " + suite + "/"):
                found.append(f"{parts[0]}={parts[1]}")
        return sorted(set(found))

    found = lookup()
    if not found:
        run(["apt-get", "update", "-qq"])
        found = lookup()
    return found


def digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def source_files() -> list[Path]:
    """What the wheel is built from: pyproject.toml and the package's modules."""
    files = [p for p in (REPO / "flexvol").rglob("*.py") if "__pycache__" not in p.parts]
    return [REPO / "pyproject.toml", *sorted(files)]


def source_digest() -> str:
    parts = [Path(__file__).read_bytes(), (REPO / "scripts" / "e2e_image.py").read_bytes()]
    for path in source_files():
        parts += [str(path.relative_to(REPO)).encode(), path.read_bytes()]
    return digest(parts)


def unmount_under(root: Path) -> None:
    """Mounts a failed debootstrap left inside its target (proc, sys), deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(str(root) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def build_rootfs(out: Path, uri: str, suite: str, work: Path) -> None:
    if not shutil.which("debootstrap"):
        raise SystemExit("flexvol-image: debootstrap is missing (apt-get install debootstrap, "
                         "or scripts/deps.sh test)")
    root = work / "rootfs"
    started = time.monotonic()
    log(f"debootstrap --variant=minbase --include={','.join(INCLUDE)} {suite} (about a minute)")
    try:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", suite, str(root), uri])
    finally:
        unmount_under(root)
    for relative in TRIM:
        path = root / relative
        if path.is_dir():
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for special in ("dev", "proc", "sys", "run", "tmp"):
        for child in (root / special).iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    # Top-level names, not ".": a layer holds no entry for its own root.
    names = sorted(p.name for p in root.iterdir())
    run(["tar", "--numeric-owner", "--sort=name", "-C", str(root), "-cf", str(out), *names])
    shutil.rmtree(root)
    log(f"root filesystem packed in {time.monotonic() - started:.0f}s: {out.stat().st_size >> 20} MiB")


def python_version(rootfs_tar: Path) -> str:
    """The image's python3 ("3.11"), from the /usr/bin/python3 link in the layer."""
    listing = run(["tar", "-tvf", str(rootfs_tar), "usr/bin/python3"])
    target = listing.split("->")[-1].strip()  # python3.11
    return target.removeprefix("python")


def build_app_layer(out: Path, work: Path, py: str, arch: str) -> None:
    """flexvol and its dependencies for the image's Python under usr/local, and `flexvol`."""
    src = work / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    for path in source_files()[1:]:
        target = src / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    # The wheel's long description only: the image does not change with the README.
    (src / "README.md").write_text("flexvol\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "wheel", "--no-deps", "-w", str(work / "wheels"), str(src)])
    [wheel] = (work / "wheels").glob("flexvol-*.whl")
    layer = work / "layer"
    site = layer / "usr" / "local" / "lib" / f"python{py}" / "dist-packages"
    run([*pip, "install", "--target", str(site), "--only-binary=:all:", "--implementation", "cp",
         "--python-version", py, "--abi", f"cp{py.replace('.', '')}",
         "--platform", f"manylinux2014_{ARCHES[arch]}", "--platform", f"manylinux_2_28_{ARCHES[arch]}",
         "--platform", f"manylinux_2_34_{ARCHES[arch]}", "--no-warn-script-location", str(wheel)])
    shutil.rmtree(site / "bin", ignore_errors=True)  # scripts naming this machine's python
    bin_dir = layer / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True)
    entry = bin_dir / "flexvol"
    entry.write_text("#!/usr/bin/python3\nimport sys\nfrom flexvol.cli.main import run\nsys.exit(run())\n")
    entry.chmod(0o755)
    run(["tar", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C", str(layer), "-cf",
         str(out), "usr"])


def build(cache: Path, tag: str, uri: str | None) -> Path:
    images = cache / "image"
    images.mkdir(parents=True, exist_ok=True)
    lock = open(images / ".lock", "w")  # noqa: SIM115 - held until the process ends
    fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second caller reuses the first's
    arch = run(["dpkg", "--print-architecture"]).strip()
    if arch not in ARCHES:
        raise SystemExit(f"flexvol-image: no wheels known for architecture {arch}")
    uri = uri or mirror(SUITE)
    versions = offered_versions(INCLUDE, uri, SUITE)
    deb_key = digest([x.encode() for x in (ROOTFS_RECIPE, SUITE, uri, arch, *INCLUDE, *versions)])
    image = images / f"flexvol-{deb_key}-{source_digest()}-{tag.replace(':', '_')}.tar"
    if image.exists():
        log(f"reusing {image}")
        return image
    work = Path(tempfile.mkdtemp(prefix="build-", dir=images))
    try:
        rootfs = images / f"rootfs-{SUITE}-{deb_key}.tar"
        if not rootfs.exists():
            build_rootfs(work / "rootfs.tar", uri, SUITE, work)
            (work / "rootfs.tar").rename(rootfs)
        started = time.monotonic()
        app = work / "app.tar"
        build_app_layer(app, work, python_version(rootfs), arch)
        exec_config = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["flexvol", "--help"]}
        write_archive(str(work / "image.tar"), tag, [str(rootfs), str(app)], exec_config, arch)
        (work / "image.tar").rename(image)
        log(f"flexvol layer and image in {time.monotonic() - started:.0f}s: {image}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # Images of older sources go after a day (a concurrent run may still be importing a new one).
    for old in images.glob("flexvol-*.tar"):
        with contextlib.suppress(OSError):
            if old != image and time.time() - old.stat().st_mtime > 86400:
                old.unlink()
    return image


def main(argv: list[str]) -> None:
    import flexvol

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("FLEXVOL_E2E_CACHE", "/var/cache/flexvol-e2e")))
    parser.add_argument("--tag", default=f"flexvol:{flexvol.__version__}")
    parser.add_argument("--mirror", help="Debian mirror URI (default: the one apt uses)")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("flexvol-image: needs root (debootstrap)")
    if platform.system() != "Linux":
        raise SystemExit("flexvol-image: Linux only")
    print(build(options.cache, options.tag, options.mirror))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(sys.argv[1:])
