#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the main job on the bundled offline demo model:
# napari opens with a simulated defocus z-stack, the DGNO widget docked and the demo model selected.
# Without a display (or with --headless) it writes OUT/deblurred.tif and OUT/side_by_side.png instead.
#   bash scripts/demo.sh                          # napari (needs a display)
#   bash scripts/demo.sh --headless --out demo_out
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=setup.sh
. "$ROOT/scripts/setup.sh"
exec napari-dgno demo "$@"
