#!/usr/bin/env bash
# Creates .venv and installs mmtalker into it when it is missing or when pyproject.toml changed.
# Sourced by scripts/demo.sh and scripts/test.sh, so a newcomer never types a pip command; also safe to source
# in an interactive shell (`source scripts/bootstrap.sh` puts .venv/bin on PATH): it sets no shell options and
# a failure returns instead of closing the shell.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

stamp_of() { cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
    echo "[mmtalker] creating the virtual environment in .venv (first run only)" >&2
    "$PY" -m venv "$VENV" || { echo "[mmtalker] could not create $VENV with $PY" >&2; return 1 2>/dev/null || exit 1; }
fi
if [ "$(cat "$VENV/.mmtalker-stamp" 2>/dev/null)" != "$(stamp_of)" ]; then
    echo "[mmtalker] installing mmtalker and its pinned dependencies into .venv (about a minute)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -e "$ROOT[synth,dev]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$VENV/bin/python" -c "import mmtalker" || { echo "[mmtalker] installation failed; see the pip output above" >&2; return 1 2>/dev/null || exit 1; }
    stamp_of > "$VENV/.mmtalker-stamp"
fi
# The default face (menpo3d's BSD-3 head) is fetched once from PyPI into the cache; without it a
# procedural head stands in, so this step may fail without stopping anything.
if "$VENV/bin/mmtalker" data fetch-template --help >/dev/null 2>&1; then
    "$VENV/bin/mmtalker" data fetch-template --quiet || echo "[mmtalker] warning: the default face could not be fetched; a procedural head will stand in" >&2
fi
# The Khronos glTF validator (npm) checks our GLB exports in the tests; optional, skipped without node.
if command -v npm >/dev/null 2>&1 && [ ! -d "$VENV/node/node_modules/gltf-validator" ]; then
    mkdir -p "$VENV/node"
    (cd "$VENV/node" && npm install --silent --no-audit --no-fund gltf-validator@2.0.0-dev.3.10 >/dev/null 2>&1) \
        || echo "[mmtalker] note: the glTF validator could not be installed; its test will be skipped" >&2
fi
export PATH="$VENV/bin:$PATH"
