"""The one table rule: whole cells, one number format per column, wrapped to 100 columns, read back."""

from __future__ import annotations

import math

import pytest
from table_check import assert_table, cell_matches

from fluidopt.cli.tables import TABLE_WIDTH, column_formatter, format_table, parse_tables


def test_a_long_cell_is_never_cut_and_the_table_wraps_within_the_width():
    rows = [("a100-80gb-llama-3-8b-vidur-predictor", "x" * 50, 2048, 0.5), ("b", "y", 204, 12.25)]
    text = format_table(["profile", "description", "max_num_batched_tokens", "value s"], rows)
    assert max(len(line) for line in text.splitlines()) <= TABLE_WIDTH
    assert "a100-80gb-llama-3-8b-vidur-predictor" in text and "x" * 50 in text and "2048" in text
    (table,) = parse_tables(text)
    assert_table(
        table, {"profile": [r[0] for r in rows], "max_num_batched_tokens": [2048, 204], "value s": [0.5, 12.25]}
    )


def test_a_cell_wider_than_the_page_goes_vertical():
    text = format_table(["key", "text"], [("k", "z" * 150)])
    assert "z" * 150 in text.split("\n")[-1]  # one unbreakable word stays whole, on a line of its own
    words = " ".join(["word"] * 60)
    folded = format_table(["key", "text"], [("k", words)])
    assert max(len(line) for line in folded.splitlines()) <= TABLE_WIDTH
    assert " ".join(folded.replace("\n  ", " ").split()).endswith(words)


def test_one_number_format_per_column():
    fmt = column_formatter([3137.2, 66727.1, 4773.0])
    assert [fmt(v) for v in (3137.2, 66727.1)] == ["3137", "66727"]
    fmt = column_formatter([0.0035818, 0.09964])
    assert fmt(0.09964) == "0.099640" and fmt(0.0035818) == "0.003582"
    fmt = column_formatter([1e-5, 2.0])
    assert fmt(2.0) == "2.000e+00"
    assert column_formatter([2048, 512])(2048) == "2048"


def test_missing_values_print_as_a_dash_and_booleans_as_words():
    (table,) = parse_tables(format_table(["a", "b", "c"], [(None, True, math.nan), (1.5, False, 2.0)]))
    assert table == {"a": ["-", "1.500"], "b": ["yes", "no"], "c": ["-", "2"]}


def test_notes_explain_abbreviations_under_the_table():
    text = format_table(["seqs"], [(64,)], notes=["seqs = max_num_seqs"])
    assert text.splitlines()[-2:] == ["", "seqs = max_num_seqs"]


def test_wrapped_parts_repeat_the_key_columns_and_read_back_as_one_table():
    rows = [(f"p{i}", f"w{i}", *(1000 + j for j in range(12))) for i in range(3)]
    headers = ["profile", "workload", *(f"column number {j}" for j in range(12))]
    text = format_table(headers, rows, keys=2)
    assert text.count("profile") >= 2
    (table,) = parse_tables(text)
    assert_table(table, {h: [r[k] for r in rows] for k, h in enumerate(headers)})


@pytest.mark.parametrize(
    ("text", "value", "ok"),
    [("2048", 2048, True), ("204", 2048, False), ("1.09", 1.0853, True), ("1.2", 1.0853, False), ("-", None, True)],
)
def test_the_cell_check_catches_a_cut_number(text, value, ok):
    assert cell_matches(text, value) is ok
