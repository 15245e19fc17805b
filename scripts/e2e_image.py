"""Packs one static binary into a single-layer docker-archive image, for `ctr images import`.

Usage: e2e_image.py [--over BASE.tar] OUT.tar NAME:TAG BINARY PATH_IN_IMAGE [--applets] [--cmd WORD] [--libs]
--applets adds a symlink in the binary's directory for each busybox applet, and makes `sh` the
default command. Entry point otherwise: the binary itself, with WORD as its default argument.
--over puts the binary's layer over BASE.tar's layers (an archive this script wrote).
--libs adds the (host) binary's shared libraries at their paths.
`write_archive` packs layer tarballs made elsewhere (scripts/flexvol_image.py uses it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import PurePosixPath


def _shared_libraries(binary: str) -> list[str]:
    """The paths the dynamic loader opens for `binary` (ldd's), the loader itself included."""
    listing = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    found = []
    for line in listing.splitlines():
        words = line.replace("=>", " ").split()
        found += [word for word in words if word.startswith("/")][:1]
    return found


def _add_libraries(tar: tarfile.TarFile, binary: str) -> None:
    """A dynamically linked host binary's libraries, at the same paths, as plain files."""
    dirs: set[PurePosixPath] = set()
    for lib in _shared_libraries(binary):
        target = PurePosixPath(lib.lstrip("/"))
        for d in reversed(target.parents[:-1]):
            if d not in dirs:
                dirs.add(d)
                info = tarfile.TarInfo(str(d))
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
        with open(os.path.realpath(lib), "rb") as f:
            data = f.read()
        info = tarfile.TarInfo(str(target))
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))


def _layer(binary: str, path: str, applets: bool, libs: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        target = PurePosixPath(path.lstrip("/"))
        parents = list(reversed(target.parents))[1:]
        for d in [*parents, PurePosixPath("tmp"), PurePosixPath("data"), PurePosixPath("etc")]:
            info = tarfile.TarInfo(str(d))
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d.name == "tmp" else 0o755
            tar.addfile(info)
        with open(binary, "rb") as f:
            data = f.read()
        info = tarfile.TarInfo(str(target))
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
        if libs:
            _add_libraries(tar, binary)
        if applets:
            listing = subprocess.run([binary, "--list"], capture_output=True, text=True, check=True).stdout
            for name in sorted(set(listing.split()) - {target.name}):
                link = tarfile.TarInfo(str(target.parent / name))
                link.type = tarfile.SYMTYPE
                link.linkname = target.name
                tar.addfile(link)
    return buf.getvalue()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def write_archive(out: str, ref: str, layers: list[str], exec_config: dict,
                  architecture: str = "amd64") -> None:
    """A docker-archive tarball of `layers` (uncompressed layer tarballs, lowest first)."""
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": exec_config,
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer) for layer in layers]},
            "history": [{"created_by": "flexvol e2e_image.py"} for _ in layers],
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = [f"layer{i}.tar" for i in range(len(layers))]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": names}]).encode()
    with tarfile.open(out, "w") as tar:
        for name, layer in zip(names, layers, strict=True):
            tar.add(layer, arcname=name, recursive=False)
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def _base_layers(base: str, into: str) -> list[str]:
    """BASE.tar's layer tarballs, extracted into `into`, lowest first."""
    with tarfile.open(base) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        layers = []
        for i, name in enumerate(manifest[0]["Layers"]):
            path = os.path.join(into, f"base{i}.tar")
            with open(path, "wb") as f:
                f.write(tar.extractfile(name).read())  # type: ignore[union-attr]
            layers.append(path)
    return layers


def main(argv: list[str]) -> None:
    base = None
    if argv[0] == "--over":
        base, argv = argv[1], argv[2:]
    out, ref, binary, path = argv[:4]
    options = argv[4:]
    applets = "--applets" in options
    exec_config: dict = {"Cmd": ["sh"]} if applets else {"Entrypoint": [path]}
    if "--cmd" in options:
        exec_config["Cmd"] = [options[options.index("--cmd") + 1]]
    exec_config["Env"] = ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        layers = _base_layers(base, tmp) if base else []
        layer = os.path.join(tmp, "top.tar")
        with open(layer, "wb") as f:
            f.write(_layer(binary, path, applets, "--libs" in options))
        write_archive(out, ref, [*layers, layer], exec_config)


if __name__ == "__main__":
    main(sys.argv[1:])
