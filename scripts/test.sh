#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and run the whole test suite. GUI tests open a real napari
# viewer on a virtual X screen started by pytest-xvfb; GPU tests skip without CUDA.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=setup.sh
. "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec python -m pytest -q -p no:cacheprovider "$@"
