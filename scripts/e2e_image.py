"""Packs one static binary into a single-layer docker-archive image, for `ctr images import`.

Usage: e2e_image.py OUT.tar NAME:TAG BINARY PATH_IN_IMAGE [--applets]
--applets adds a symlink in the binary's directory for each busybox applet, and makes `sh` the
default command. Entry point otherwise: the binary itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
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


def main(argv: list[str]) -> None:
    out, ref, binary, path = argv[:4]
    applets = "--applets" in argv[4:]
    layer = _layer(binary, path, applets)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    exec_config = {"Cmd": ["sh"]} if applets else {"Entrypoint": [path]}
    exec_config["Env"] = ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": exec_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "flexvol e2e_image.py"}],
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(out, "w") as tar:
        for name, data in (("layer.tar", layer), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main(sys.argv[1:])
