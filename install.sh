#!/usr/bin/env bash
# Installs flexvol on a node: a virtual environment with the package and the toolkit under
# PREFIX, the `flexvol` command in BIN_DIR, and the driver at
# PLUGIN_DIR/flexvol~loop/loop (so pods name it `driver: flexvol/loop`).
#
#   ./install.sh [--prefix DIR] [--plugin-dir DIR] [--data-root DIR] [--bin-dir DIR]
#                [--attach] [--uninstall] [--no-deps]
#
# Idempotent: running it twice is the same as once. --uninstall removes what it installed and
# never the data root.
set -euo pipefail

PREFIX=/opt/flexvol
PLUGIN_DIR=/usr/libexec/kubernetes/kubelet-plugins/volume/exec
DATA_ROOT=/var/lib/flexvol
BIN_DIR=/usr/local/bin
ATTACH=False
UNINSTALL=0
DEPS=1
# The kubelet runs the driver with its own environment: name the interpreter by absolute path.
PYTHON=/usr/bin/python3
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --plugin-dir) PLUGIN_DIR="$2"; shift 2 ;;
        --data-root) DATA_ROOT="$2"; shift 2 ;;
        --bin-dir) BIN_DIR="$2"; shift 2 ;;
        --attach) ATTACH=True; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --no-deps) DEPS=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

for dir in "$PREFIX" "$PLUGIN_DIR" "$DATA_ROOT" "$BIN_DIR"; do
    if [[ "$dir" != /* ]]; then
        echo "install.sh: $dir is not an absolute path" >&2
        exit 2
    fi
done

DRIVER_DIR="$PLUGIN_DIR/flexvol~loop"
DRIVER="$DRIVER_DIR/loop"

if ((UNINSTALL)); then
    PYTHONPATH="$SOURCE" "$PYTHON" -B -m flexvol.toolkit.plugindir remove --plugin-dir "$PLUGIN_DIR"
    if [[ -L "$BIN_DIR/flexvol" && "$(readlink "$BIN_DIR/flexvol")" == "$PREFIX/"* ]]; then
        rm -f "$BIN_DIR/flexvol"
    fi
    rm -rf "$PREFIX/venv"
    rm -f "$PREFIX/installed"
    rmdir "$PREFIX" 2>/dev/null || true
    echo "flexvol uninstalled (data root $DATA_ROOT kept)"
    exit 0
fi

if ((DEPS)); then
    "$SOURCE/scripts/deps.sh"
fi

mkdir -p "$PREFIX"
if [[ ! -x "$PREFIX/venv/bin/python" ]]; then
    "$PYTHON" -m venv "$PREFIX/venv"
fi
# Build flexvol with the venv's own setuptools and wheel, not in an isolated build environment
# pip would fetch them into at every install: they are installed into the venv once (from the
# configured index or wheel dir) when missing or too old, then the build uses them.
if ! "$PREFIX/venv/bin/python" -c 'import sys, setuptools, wheel
sys.exit(int(setuptools.__version__.split(".")[0]) < 61)' 2>/dev/null; then
    "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check "setuptools>=61" wheel >/dev/null
fi
"$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation \
    --upgrade "$SOURCE" >/dev/null
SITE="$("$PREFIX/venv/bin/python" -c 'import flexvol, os; print(os.path.dirname(os.path.dirname(flexvol.__file__)))')"

install -d -m 0755 "$BIN_DIR"
# The placement itself (atomic write, bytecode, init check) is flexvol.toolkit.plugindir, the same code
# as `flexvol install`.
PLACE=(place --plugin-dir "$PLUGIN_DIR" --data-root "$DATA_ROOT" --python "$PYTHON" --site "$SITE")
if [[ "$ATTACH" == True ]]; then
    PLACE+=(--attach)
fi
"$PREFIX/venv/bin/python" -m flexvol.toolkit.plugindir "${PLACE[@]}"

ln -sfn "$PREFIX/venv/bin/flexvol" "$BIN_DIR/flexvol"
printf 'driver=%s\ndata_root=%s\nattach=%s\n' "$DRIVER" "$DATA_ROOT" "$ATTACH" > "$PREFIX/installed"

echo "flexvol installed: driver $DRIVER (attach=$ATTACH), data root $DATA_ROOT, CLI $BIN_DIR/flexvol"
