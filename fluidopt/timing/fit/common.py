"""What every fitter shares: the quality of a fitted component, CSV reading, row-count checks."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fluidopt.errors import InputError, require


@dataclass(frozen=True)
class ComponentFit:
    """Quality of one fitted component against the measurements it came from."""

    name: str
    model: str
    mape: float
    max_abs_pct_error: float
    points: int

    def to_dict(self) -> dict[str, Any]:
        """TOML/JSON-ready mapping."""
        return {
            "model": self.model,
            "mape": self.mape,
            "max_abs_pct_error": self.max_abs_pct_error,
            "points": self.points,
        }


def component_quality(name: str, model: str, predicted: np.ndarray, measured: np.ndarray) -> ComponentFit:
    """Mean and worst relative error of ``predicted`` against ``measured``."""
    error = np.abs(predicted - measured) / measured
    return ComponentFit(name, model, float(np.mean(error)), float(np.max(error)), int(measured.size))


def open_csv(path: Path) -> tuple[Any, list[str]]:
    """A ``csv.DictReader`` on ``path`` and its header (an unreadable file is an InputError)."""
    try:
        stream = path.open(newline="", encoding="utf-8")
        reader = csv.DictReader(stream)
        header = list(reader.fieldnames or [])
    except OSError as exc:
        raise InputError("path", str(path), f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(str(path), "not UTF-8", "must be a UTF-8 CSV file") from None
    return (stream, reader), header


def csv_number(row: dict[str, Any], column: str, where: str) -> float:
    raw = row.get(column)
    try:
        value = float(raw) if raw not in (None, "") else float("nan")
    except ValueError:
        raise InputError(f"{where} column {column}", raw, "must be a number") from None
    if not np.isfinite(value):
        raise InputError(f"{where} column {column}", raw, "must be a finite number")
    return value


def require_rows(count: int, minimum: int, where: str) -> None:
    """At least ``minimum`` rows to fit, else an InputError naming ``where``."""
    require(count >= minimum, where, count, f"need at least {minimum} rows to fit")
