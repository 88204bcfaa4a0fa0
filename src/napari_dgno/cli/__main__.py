"""``python -m napari_dgno.cli`` runs the ``napari-dgno`` command."""

import sys

from . import main

sys.exit(main())
