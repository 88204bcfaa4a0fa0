"""`napari-dgno demo` (being written)."""


def register(subparsers) -> None:
    """Placeholder until the sub-command lands."""
