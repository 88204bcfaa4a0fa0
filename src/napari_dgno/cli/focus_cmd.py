"""`napari-dgno focus` (being written)."""


def register(subparsers) -> None:
    """Placeholder until the sub-command lands."""
