#!/usr/bin/env bash
# Set up everything napari-dgno needs on a fresh Debian/Ubuntu machine, idempotently:
# system libraries for Qt/napari and a virtual screen (apt), a virtualenv in .venv with a CPU build
# of torch (an unpinned `pip install torch` pulls a multi-GB CUDA build), and the package itself
# (editable) with its test, training and GUI extras. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
  libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0
  libxcb-xkb1 libdbus-1-3 libfontconfig1 libglib2.0-0 libgl1-mesa-dri libglx-mesa0)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch (CPU build)"
  pip install -q "torch==2.13.0" 2>/dev/null || pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
if ! python -c "import napari_dgno, napari, pytest, yaml" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.napari_dgno_installed ]; then
  echo "setup: installing napari-dgno and its dependencies into .venv"
  pip install -q -e ".[test,train,gui]"
  touch .venv/.napari_dgno_installed
fi
