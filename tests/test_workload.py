import math

import numpy as np
import pytest

from fluidopt.errors import InputError
from fluidopt.tomlio import dumps_toml
from fluidopt.trace import read_trace
from fluidopt.workload import (
    RequestClass,
    Workload,
    load_workload,
    preset_workload,
    workload_from_trace,
    workload_presets,
)

REQUIRED_PRESETS = {
    "toy",
    "fcfs-counterexample",
    "p512d20",
    "p512d50",
    "mix-p512d20-p512d50",
    "p512d1000",
    "lmsys-like",
}


def test_required_presets_exist_and_load():
    assert REQUIRED_PRESETS <= set(workload_presets())
    for name in workload_presets():
        workload = preset_workload(name)
        assert workload.total_rate_per_s > 0
        assert workload.description


def test_kv_mass_formula_hand_solved():
    # S = sum_{s=0}^{l'} (l + s) = (l'+1)(l + l'/2)
    c = RequestClass("x", prefill_tokens=512, decode_tokens=20, rate_per_s=1.0)
    assert c.kv_mass_tokens == sum(512 + s for s in range(21)) == 21 * 522
    assert RequestClass("t", 1, 1, 4.0).kv_mass_tokens == 3


def test_mix_preset_has_paper_shares():
    mix = preset_workload("mix-p512d20-p512d50")
    np.testing.assert_allclose(mix.shares, [0.7, 0.3])
    assert [c.decode_tokens for c in mix.classes] == [20, 50]


def test_lmsys_like_matches_quoted_statistics():
    w = preset_workload("lmsys-like")
    shares, decode = w.shares, w.decode
    assert abs(float(shares @ decode) - 147.3) / 147.3 < 0.02
    assert abs(float(shares[decode <= 50].sum()) - 0.31) < 0.02
    assert abs(float(shares[decode > 300].sum()) - 0.14) < 0.02
    assert np.all(decode < 500)
    assert np.all(w.prefill == 59)


def test_rescaling_keeps_shares():
    mix = preset_workload("mix-p512d20-p512d50")
    faster = mix.with_total_rate(30)
    assert math.isclose(faster.total_rate_per_s, 30)
    np.testing.assert_allclose(faster.shares, mix.shares)
    np.testing.assert_allclose(mix.scaled(2).rates, 2 * mix.rates)
    assert math.isclose(load_workload("p512d20", rate_per_s=7).total_rate_per_s, 7)
    assert math.isclose(load_workload("p512d20", scale=0.5).total_rate_per_s, 9)
    with pytest.raises(InputError, match="rate"):
        load_workload("p512d20", rate_per_s=1, scale=2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_per_s": -1.0}, "rate_per_s"),
        ({"rate_per_s": float("nan")}, "rate_per_s"),
        ({"decode_tokens": 0}, "decode_tokens"),
        ({"prefill_tokens": 0}, "prefill_tokens"),
        ({"prefill_tokens": 2.5}, "prefill_tokens"),
        ({"rate_per_s": "fast"}, "rate_per_s"),
    ],
)
def test_bad_class_fields_name_field_and_value(kwargs, field):
    args = {"name": "c", "prefill_tokens": 10, "decode_tokens": 5, "rate_per_s": 1.0, **kwargs}
    with pytest.raises(InputError) as info:
        RequestClass(**args)
    assert field in str(info.value)
    assert info.value.field.endswith(field)


def test_duplicate_names_rejected():
    c = RequestClass("c", 1, 1, 1.0)
    with pytest.raises(InputError, match="unique"):
        Workload("w", (c, c))


def test_toml_round_trip(tmp_path):
    mix = preset_workload("mix-p512d20-p512d50")
    path = tmp_path / "w.toml"
    path.write_text(dumps_toml(mix.to_dict()))
    again = load_workload(str(path))
    assert again.classes == mix.classes


def test_malformed_toml_names_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n[[classes]")
    with pytest.raises(InputError, match="bad.toml"):
        load_workload(str(path))
    path.write_text('name = "x"\n[[classes]]\nprefill_tokens = 4\ndecode_tokens = 2\n')
    with pytest.raises(InputError, match="rate_per_s"):
        load_workload(str(path))


def test_unknown_preset_lists_choices():
    with pytest.raises(InputError, match="toy"):
        preset_workload("nope")


def _write_trace(tmp_path, text):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_trace_binning_hand_solved(tmp_path):
    path = _write_trace(
        tmp_path,
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,1\n1,20,2\n2,30,10\n3,50,12\n4,10,11\n",
    )
    workload = workload_from_trace(read_trace(path), bins=[0, 5, 20])
    assert workload.num_classes == 2
    short, long = workload.classes
    assert (short.decode_tokens, short.prefill_tokens) == (2, 15)  # mean decode 1.5 -> 2, prefill 15
    assert (long.decode_tokens, long.prefill_tokens) == (11, 30)
    assert math.isclose(workload.total_rate_per_s, 4 / 4)  # 4 gaps over 4 seconds
    assert math.isclose(short.rate_per_s, 0.4)
    conservative = workload_from_trace(read_trace(path), bins=[0, 5, 20], prefill_statistic="max")
    assert [c.prefill_tokens for c in conservative.classes] == [20, 50]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("num_prefill_tokens,num_decode_tokens\n5,x\n", "trace.csv:2: num_decode_tokens"),
        ("num_prefill_tokens,num_decode_tokens\n5,0\n", "must be >= 1"),
        ("num_prefill_tokens\n5\n", "num_decode_tokens"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n2,5,1\n1,5,1\n", "must not decrease"),
        ("num_prefill_tokens,num_decode_tokens\n", "at least one"),
    ],
)
def test_malformed_trace_errors(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_trace(_write_trace(tmp_path, text))


def test_trace_without_arrivals_needs_rate(tmp_path):
    path = _write_trace(tmp_path, "num_prefill_tokens,num_decode_tokens\n5,3\n6,4\n")
    with pytest.raises(InputError, match="rate"):
        load_workload(str(path))
    assert math.isclose(load_workload(str(path), rate_per_s=3).total_rate_per_s, 3)


@pytest.mark.parametrize("trace", ["splitwise_conv.csv", "splitwise_code.csv"])
def test_real_traces_bin_into_classes(shared_data, trace):
    raw = read_trace(shared_data / "traces" / trace)
    workload = load_workload(str(shared_data / "traces" / trace))
    assert math.isclose(workload.total_rate_per_s, raw.mean_rate_per_s)
    assert 1 < workload.num_classes <= 8
    # Binning preserves the mean decode length up to per-bin rounding up.
    mean_decode = float(workload.shares @ workload.decode)
    assert raw.decode_tokens.mean() <= mean_decode <= raw.decode_tokens.mean() + 1
    edges = [0, 50, 200, 10_000]
    coarse = load_workload(str(shared_data / "traces" / trace), bins=edges)
    assert coarse.num_classes <= 3


def test_arxiv_trace_needs_a_rate(shared_data):
    path = shared_data / "traces" / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
    workload = load_workload(str(path), rate_per_s=2.0)
    assert math.isclose(workload.total_rate_per_s, 2.0)


def test_replace_does_not_rewrite_the_original():
    import dataclasses

    original = preset_workload("mix-p512d20-p512d50")
    before = original.rates.copy()
    other = dataclasses.replace(
        original, classes=tuple(dataclasses.replace(c, rate_per_s=1.0) for c in original.classes)
    )
    assert list(other.rates) == [1.0, 1.0]
    assert list(original.rates) == list(before)
    assert not original.rates.flags.writeable
