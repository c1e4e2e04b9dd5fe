"""Plot functions that take fluidopt result objects; one matplotlib style for all figures.

Importing this module changes no global matplotlib state (no backend is forced, so notebooks
show their plots); the plot functions draw inside :func:`style` and return their figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from importlib import resources
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fluidopt.fluid.stability import BoundaryResult

if TYPE_CHECKING:
    from fluidopt.profile import GPUProfile
    from fluidopt.timing.fit.batch_log import BatchLog

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
        for index, (name, points) in enumerate(boundary.peer_rates.items()):
            finite = np.all(np.isfinite(points), axis=1)
            label = PEER_LABELS.get(name, name)
            same = finite.any() and np.allclose(points[finite], rates[finite], rtol=1e-3, atol=1e-9)
            if same:
                label += " (on the fluid boundary)"
            # Drawn above the boundary, dashed, with sparse markers: a peer form that coincides with
            # the fluid boundary stays visible.
            ax.plot(
                points[finite, 0],
                points[finite, 1],
                ls=(0, (4, 3)) if index == 0 else (0, (1, 2)),
                lw=1.6,
                marker="^v"[index % 2],
                markevery=max(int(finite.sum()) // 8, 1),
                markersize=5,
                zorder=3,
                label=label,
            )
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


def plot_batch_log_fit(log: BatchLog, profile: GPUProfile, *, title: str | None = None) -> Figure:
    """Residuals of a per-batch-log fit: predicted against logged time, and the relative error by work.

    Parameters
    ----------
    log : BatchLog
        The logged iterations (:func:`fluidopt.timing.fit.batch_log.read_batch_log_csv`).
    profile : GPUProfile
        The affine profile fitted to it (:func:`fluidopt.timing.fit.batch_log.fit_batch_log_profile`).
    title : str, optional
        Figure title.

    """
    from fluidopt.timing.fit.batch_log import batch_log_predictions

    predicted, piece = batch_log_predictions(log, profile)
    work = log.prefill_tokens + log.decode_sequences
    error_pct = 100 * (predicted - log.seconds) / log.seconds
    with style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
        for index in range(len(profile.pieces)):
            rows = piece == index
            label = f"piece {index + 1} sets the time ({int(rows.sum())} iterations)"
            left.scatter(1e3 * log.seconds[rows], 1e3 * predicted[rows], s=8, alpha=0.6, label=label)
            right.scatter(work[rows], error_pct[rows], s=8, alpha=0.6, label=label)
        top = 1e3 * max(float(log.seconds.max()), float(predicted.max()))
        left.plot([0, top], [0, top], color="black", lw=1, ls="--", label="predicted = logged")
        left.set_xlabel("logged iteration time (ms)")
        left.set_ylabel("fitted iteration time (ms)")
        left.set_xlim(0, top * 1.02)
        left.set_ylim(0, top * 1.02)
        left.legend(fontsize="small")
        right.axhline(0, color="black", lw=1)
        right.set_xlabel("tokens computed in the iteration (prefill tokens + decoding sequences)")
        right.set_ylabel("relative error of the fit (%)")
        right.legend(fontsize="small")
        mape = float(np.mean(np.abs(error_pct)))
        fig.suptitle(title or f"{profile.name}: {log.seconds.size} iterations, MAPE {mape:.1f} %")
        fig.tight_layout()
    return fig
