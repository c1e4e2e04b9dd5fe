"""Every table the command line prints: one rule, no cell ever cut.

- A cell is printed whole.  A table wider than :data:`TABLE_WIDTH` columns is wrapped: its
  columns are split into groups that fit, each group printed as a table of its own that repeats
  the first ``keys`` columns (what identifies a row); a table whose keys and one more column do
  not fit goes vertical, one ``header: value`` line per cell.
- Numbers have one format per column (:func:`column_formatter`): whole numbers as integers;
  others with four significant digits on the column's smallest value, in fixed notation, or in
  scientific notation for the whole column when its values span below 0.001 or above a million.
  Units go in the header; ``None`` and non-finite numbers print as ``-``.
- Abbreviations are explained once, in notes printed under the table (after a blank line).
  A vertical table's long values are folded at the width, never cut.

:func:`parse_tables` reads the printed form back (the tests compare it with the JSON, cell by cell).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

TABLE_WIDTH = 100
MISSING = "-"
GAP = "  "


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def column_formatter(values: Sequence[Any]) -> Callable[[Any], str]:
    """The one number format of a column holding ``values`` (module docstring)."""
    numbers = [float(v) for v in values if _is_number(v) and math.isfinite(float(v))]
    if numbers and all(v.is_integer() and abs(v) < 1e15 for v in numbers):
        return lambda v: str(int(v))
    magnitudes = [abs(v) for v in numbers if v != 0]
    if not magnitudes:
        return lambda v: f"{v:.4g}"
    low, high = min(magnitudes), max(magnitudes)
    if low < 1e-3 or high >= 1e6:
        return lambda v: f"{v:.3e}"
    decimals = min(max(3 - math.floor(math.log10(low)), 0), 6)
    return lambda v: f"{v:.{decimals}f}"


def format_cells(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    """Every cell as text, numbers formatted per column."""
    columns = list(zip(*rows)) if rows else [() for _ in headers]
    formatters = [column_formatter(column) for column in columns]
    out = []
    for row in rows:
        cells = []
        for value, fmt in zip(row, formatters):
            if value is None or (_is_number(value) and not math.isfinite(float(value))):
                cells.append(MISSING)
            elif isinstance(value, bool):
                cells.append("yes" if value else "no")
            elif _is_number(value):
                cells.append(fmt(value))
            else:
                cells.append(str(value))
        out.append(cells)
    return out


def _render(headers: Sequence[str], cells: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [GAP.join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append(GAP.join("-" * w for w in widths))
    lines.extend(GAP.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)
    return "\n".join(lines)


def _vertical(headers: Sequence[str], cells: list[list[str]], limit: int) -> str:
    blocks = [
        "\n".join(
            textwrap.fill(f"{h}: {c}", limit, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
            for h, c in zip(headers, row)
        )
        for row in cells
    ]
    return "\n\n".join(blocks)


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    width: int | None = TABLE_WIDTH,
    notes: Sequence[str] = (),
    keys: int = 1,
) -> str:
    """A table by the module's rule: whole cells, one number format per column, wrapped to ``width``."""
    cells = format_cells(headers, rows)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    limit = width or 10**9
    keys = max(1, min(keys, len(headers) - 1)) if len(headers) > 1 else 1
    key_width = sum(widths[:keys]) + len(GAP) * (keys - 1)
    text: str
    if sum(widths) + len(GAP) * (len(widths) - 1) <= limit:
        text = _render(headers, cells)
    elif len(headers) <= keys or key_width + len(GAP) + max(widths[keys:]) > limit:
        text = _vertical(headers, cells, limit)
    else:
        groups: list[list[int]] = [[]]
        used = key_width
        for i in range(keys, len(headers)):
            if groups[-1] and used + len(GAP) + widths[i] > limit:
                groups.append([])
                used = key_width
            groups[-1].append(i)
            used += len(GAP) + widths[i]
        parts = []
        for group in groups:
            keep = [*range(keys), *group]
            parts.append(_render([headers[i] for i in keep], [[row[i] for i in keep] for row in cells]))
        text = "\n\n".join(parts)
    if notes:
        wrapped = [textwrap.fill(note, limit, subsequent_indent="  ") for note in notes]
        text += "\n\n" + "\n".join(wrapped)
    return text


def parse_tables(text: str) -> list[dict[str, list[str]]]:
    """The horizontal tables in printed ``text``: per table, each header's column of cells (wrapped parts joined).

    A table is a header line, a line of dash runs, and the rows up to the next blank line; cells
    are read at the dash runs' positions.  Consecutive parts of one wrapped table (the same
    leading key columns, cell for cell) are joined into one.
    """
    lines = text.splitlines()
    tables: list[dict[str, list[str]]] = []
    i = 0
    while i + 1 < len(lines):
        dashes = lines[i + 1]
        if dashes and set(dashes.replace(" ", "")) == {"-"} and lines[i].strip():
            spans = []
            start = None
            for j, ch in enumerate(dashes + " "):
                if ch == "-" and start is None:
                    start = j
                elif ch != "-" and start is not None:
                    spans.append((start, j))
                    start = None
            header_line = lines[i]
            headers = [
                header_line[a : (spans[k + 1][0] if k + 1 < len(spans) else len(header_line))].strip()
                for k, (a, _) in enumerate(spans)
            ]
            columns: dict[str, list[str]] = {h: [] for h in headers}
            j = i + 2
            while j < len(lines) and lines[j].strip():
                row = lines[j]
                for k, (a, _) in enumerate(spans):
                    end = spans[k + 1][0] if k + 1 < len(spans) else len(row)
                    columns[headers[k]].append(row[a:end].strip())
                j += 1
            previous = tables[-1] if tables else None
            shared = [h for h in headers if previous is not None and h in previous]
            if (
                previous is not None
                and shared
                and shared == headers[: len(shared)]
                and all(previous[h] == columns[h] for h in shared)
                and len(shared) < len(headers)
            ):
                previous.update({h: v for h, v in columns.items() if h not in shared})
            else:
                tables.append(columns)
            i = j
        else:
            i += 1
    return tables
