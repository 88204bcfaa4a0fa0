"""The focus-curve plot: focus measure against z for input and result, the current plane, click to jump."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.backend_bases import MouseButton
from matplotlib.figure import Figure

#: Line colours of the curves (colour-blind safe pair).
COLORS = {"input": "#8c9bb0", "result": "#f5a623"}


def _theme_colors(theme: str | None) -> tuple[str, str]:
    """(background, text) colours of a napari theme, so the plot matches the dock it sits in."""
    try:
        from napari.utils.theme import get_theme

        t = get_theme(theme or "dark")
        return t.background.as_hex(), t.text.as_hex()
    except Exception:  # unknown theme or an older napari: matplotlib's defaults are fine
        return "white", "black"


class FocusPlot:
    """A matplotlib canvas (Qt) with one curve per stack, best-focus markers and a current-plane line.

    ``on_pick(plane)`` is called with the nearest plane index when the plot is clicked with the left button.
    """

    def __init__(self, on_pick: Callable[[int], Any], theme: str | None = None):
        background, text = _theme_colors(theme)
        self.figure = Figure(figsize=(4.0, 2.6), facecolor=background, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.axes = self.figure.add_subplot()
        self.axes.set_facecolor(background)
        for spine in self.axes.spines.values():
            spine.set_color(text)
        self.axes.tick_params(colors=text)
        self.axes.xaxis.label.set_color(text)
        self.axes.yaxis.label.set_color(text)
        self.axes.title.set_color(text)
        self._text = text
        self._on_pick = on_pick
        self._planes = 0
        self.curves: dict[str, np.ndarray] = {}
        self._artists: list[Any] = []
        self.marker = self.axes.axvline(0.0, color=text, linestyle="--", linewidth=1.0, visible=False)
        self.axes.set_xlabel("z plane")
        self.canvas.mpl_connect("button_press_event", self._clicked)

    @property
    def marker_x(self) -> float | None:
        """x (plane index) of the current-plane line, None while hidden."""
        return float(self.marker.get_xdata()[0]) if self.marker.get_visible() else None

    def set_curves(self, curves: dict[str, np.ndarray | None], planes: int, measure: str) -> None:
        """Draw the given curves (None entries are skipped) over ``planes`` z planes for ``measure``."""
        for artist in self._artists:
            artist.remove()
        self._artists.clear()
        self.curves = {name: np.asarray(c) for name, c in curves.items() if c is not None}
        self._planes = int(planes)
        z = np.arange(self._planes)
        for name, curve in self.curves.items():
            color = COLORS.get(name, self._text)
            best = int(np.argmax(curve))
            (line,) = self.axes.plot(z, curve, "-o", color=color, markersize=3, label=f"{name} (best z={best})")
            (star,) = self.axes.plot([best], [curve[best]], "*", color=color, markersize=12)
            self._artists += [line, star]
        self.axes.set_ylabel(measure.replace("_", " "))
        if self._planes:
            self.axes.set_xlim(-0.5, self._planes - 0.5)
        self.axes.relim()
        self.axes.autoscale_view(scalex=False)
        if self.curves:
            legend = self.axes.legend(loc="best", fontsize="small", frameon=False, labelcolor=self._text)
            self._artists.append(legend)
        self.canvas.draw_idle()

    def set_current(self, plane: int | None) -> None:
        """Move the current-plane line to ``plane`` (None hides it)."""
        if plane is None:
            self.marker.set_visible(False)
        else:
            self.marker.set_xdata([plane, plane])
            self.marker.set_visible(True)
        self.canvas.draw_idle()

    def _clicked(self, event: Any) -> None:
        if event.inaxes is not self.axes or event.xdata is None or event.button != MouseButton.LEFT:
            return
        if self._planes:
            self._on_pick(int(np.clip(np.round(event.xdata), 0, self._planes - 1)))
