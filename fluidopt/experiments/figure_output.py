"""The figure record shared by the figure modules: a figure, its data rows and its config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class FigureOutput:
    """A figure with the rows of its data and the config that made it."""

    name: str
    figure: Any
    rows: list[dict[str, Any]]
    config: dict[str, Any]
