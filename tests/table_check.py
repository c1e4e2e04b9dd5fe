"""Compare a printed table, read back with :func:`fluidopt.cli.tables.parse_tables`, with the JSON it came from."""

from __future__ import annotations

import json
import math
import re
from typing import Any

NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[+-]\d+)?$")


def cell_matches(text: str, value: Any) -> bool:
    """Whether a printed cell says ``value``: whole, and numbers equal to the printed digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return text == "-"
    if isinstance(value, bool):
        return text == ("yes" if value else "no")
    if isinstance(value, int | float):
        if not NUMBER.match(text):
            return False
        printed = float(text)
        if "e" in text:
            mantissa = text.split("e")[0]
            digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
            return abs(printed - value) <= 0.5 * 10 ** (-digits) * abs(printed) * 1.0001 + 1e-300
        decimals = len(text.split(".")[1]) if "." in text else 0
        return abs(printed - value) <= 0.5 * 10 ** (-decimals) * 1.0001
    return text == str(value)


def assert_table(parsed: dict[str, list[str]], expected: dict[str, list[Any]]) -> None:
    """Every expected column is printed, row for row, cell for cell."""
    for header, values in expected.items():
        assert header in parsed, f"column {header!r} missing from {list(parsed)}"
        cells = parsed[header]
        assert len(cells) == len(values), (header, cells, values)
        for row, (text, value) in enumerate(zip(cells, values)):
            assert cell_matches(text, value), f"{header!r} row {row}: printed {text!r}, JSON {value!r}"


def json_then_text(main: Any, capsys: Any, args: list[str]) -> tuple[Any, str]:
    """Run a command with ``--json``, then plainly; both succeed and no printed line passes 100 columns."""
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 100
    return data, text
