#!/usr/bin/env bash
# Regenerates the wire types of flexvol/csi/proto (*_pb2.py, *_pb2_grpc.py) from its .proto
# files (CSI, and the kubelet's plugin registration) with grpcio-tools (pip install -e '.[test]').
# The generated modules are checked in: a node installs flexvol without protoc, Go or a network.
# Usage: scripts/csi_proto.sh [OUTPUT_ROOT]   (default: the repository; tests pass a temp dir)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo}"
python="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python=python3

mkdir -p "$out/flexvol/csi/proto"
cd "$repo"
# Compiled from the repository root so that the generated service module imports its message
# module as flexvol.csi.proto.csi_pb2 (a package import, not a top-level one).
"$python" -m grpc_tools.protoc -I . \
    --python_out="$out" --grpc_python_out="$out" flexvol/csi/proto/csi.proto \
    flexvol/csi/proto/registration.proto
