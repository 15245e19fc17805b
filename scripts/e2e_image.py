"""Packs one static binary into a single-layer docker-archive image, for `ctr images import`.

Usage: e2e_image.py OUT.tar NAME:TAG BINARY PATH_IN_IMAGE [--applets]
--applets adds a symlink in the binary's directory for each busybox applet, and makes `sh` the
default command. Entry point otherwise: the binary itself.
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


def _layer(binary: str, path: str, applets: bool) -> bytes:
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


def main(argv: list[str]) -> None:
    out, ref, binary, path = argv[:4]
    applets = "--applets" in argv[4:]
    exec_config = {"Cmd": ["sh"]} if applets else {"Entrypoint": [path]}
    exec_config["Env"] = ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(out)), suffix=".layer") as layer:
        layer.write(_layer(binary, path, applets))
        layer.flush()
        write_archive(out, ref, [layer.name], exec_config)


if __name__ == "__main__":
    main(sys.argv[1:])
