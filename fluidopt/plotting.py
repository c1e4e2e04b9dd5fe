"""Plot functions that take fluidopt result objects; one matplotlib style for all figures.

Importing this module changes no global matplotlib state (no backend is forced, so notebooks
show their plots); the plot functions draw inside :func:`style` and return their figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fluidopt.fluid.stability import BoundaryResult

MEASURED_MARKERS = ("o", "s", "^", "v", "D", "P")
PEER_LABELS = {"li_dai_peng": "Li-Dai-Peng (token budget)", "nie_si_zhou": "Nie-Si-Zhou (KV service rate)"}


STYLE_FILE = "fluidopt.mplstyle"


def style() -> AbstractContextManager[Any]:
    """Context manager applying fluidopt's matplotlib style to what is drawn inside it only."""
    return plt.style.context(str(resources.files("fluidopt").joinpath(STYLE_FILE)))


def use_style() -> None:
    """Apply fluidopt's matplotlib style globally (the figure scripts; library plots use :func:`style`)."""
    plt.style.use(str(resources.files("fluidopt").joinpath(STYLE_FILE)))


def _axes(ax: Axes | None) -> tuple[Figure, Axes]:
    if ax is None:
        with style():
            fig, ax = plt.subplots()
        return fig, ax
    return ax.figure, ax  # type: ignore[return-value]


def plot_stability_region(
    boundary: BoundaryResult,
    *,
    measured: Mapping[str, np.ndarray] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Plot a 2-class stability region: the fluid boundary, peer closed forms, measured points.

    Parameters
    ----------
    boundary : BoundaryResult
        From :func:`fluidopt.fluid.stability.stability_boundary`.
    measured : mapping, optional
        Policy name -> array (directions, 2) of measured largest stable rates.
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    title : str, optional
        Axes title.

    """
    with style():
        fig, ax = _axes(ax)
        rates = boundary.fluid_rates
        ax.fill_between(rates[:, 0], rates[:, 1], alpha=0.15, label="fluid stable region")
        ax.plot(rates[:, 0], rates[:, 1], lw=2, label="fluid boundary")
        for name, points in boundary.peer_rates.items():
            finite = np.all(np.isfinite(points), axis=1)
            ax.plot(points[finite, 0], points[finite, 1], ls="--", label=PEER_LABELS.get(name, name))
        # Policies often land on the same rate: hollow markers of shrinking size keep each visible.
        for index, (name, points) in enumerate((measured or {}).items()):
            points = np.asarray(points)
            ax.plot(
                points[:, 0],
                points[:, 1],
                marker=MEASURED_MARKERS[index % len(MEASURED_MARKERS)],
                markersize=max(12 - 2.5 * index, 4),
                markerfacecolor="none",
                markeredgewidth=1.5,
                ls=":",
                label=f"{name} (simulated)",
            )
        ax.set_xlabel(f"{boundary.class_names[0]} rate (requests/s)")
        ax.set_ylabel(f"{boundary.class_names[1]} rate (requests/s)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        if title:
            ax.set_title(title)
        ax.legend()
    return fig
