import math

import numpy as np
import pytest

from fluidopt.errors import InputError
from fluidopt.hardware import GPUS, MODELS, gpu_spec, kv_capacity_tokens, model_shape
from fluidopt.profile import AffinePiece, GPUProfile, load_profile, preset_profile, profile_presets
from fluidopt.timing.fit.vidur_csv import Measurements, fit_piecewise, fit_vidur_profile, read_vidur_mlp_csv
from fluidopt.tomlio import dumps_toml

REAL = ["a100-80gb-llama-2-7b", "h100-80gb-llama-2-7b", "a100-80gb-llama-3-8b", "h100-80gb-llama-3-8b"]


def test_required_presets():
    assert {"toy", "fcfs-counterexample", "paper-linear", *REAL} <= set(profile_presets())
    for name in profile_presets():
        assert preset_profile(name).description


def test_toy_and_counterexample_presets_match_model():
    toy = preset_profile("toy")
    assert toy.kv_capacity_tokens == 12 and toy.is_paper_linear
    assert math.isclose(toy.iteration_time(12), 1.0)
    fcfs = preset_profile("fcfs-counterexample")
    d0, d1 = fcfs.pieces[0].base_s, fcfs.pieces[0].per_kv_token_s
    assert fcfs.kv_capacity_tokens == 9 and d1 < 1 / 9 and math.isclose(d0, 1 - 9 * d1)


def test_iteration_time_is_max_of_pieces():
    profile = GPUProfile("p", 100, (AffinePiece(0.01, 0.0), AffinePiece(0.002, 0.0, 1e-4, 1e-4)))
    assert math.isclose(profile.iteration_time(0, 10, 1), 0.01)
    assert math.isclose(profile.iteration_time(0, 500, 1), 0.002 + 501e-4)
    np.testing.assert_allclose(profile.iteration_time([0, 0], [10, 500], [1, 1]), [0.01, 0.0521])


@pytest.mark.parametrize(
    ("piece", "field"),
    [
        ({"base_s": -0.1, "per_kv_token_s": 0}, "base_s"),
        ({"base_s": 0.1, "per_kv_token_s": -1e-6}, "per_kv_token_s"),
        ({"base_s": 0.1, "per_kv_token_s": float("nan")}, "per_kv_token_s"),
    ],
)
def test_bad_piece_names_field(piece, field):
    with pytest.raises(InputError, match=field):
        AffinePiece(**piece)


def test_zero_time_and_capacity_rejected():
    with pytest.raises(InputError, match="base_s"):
        GPUProfile("p", 10, (AffinePiece(0.0, 1e-3),))
    with pytest.raises(InputError, match="kv_capacity_tokens"):
        GPUProfile("p", 0, (AffinePiece(0.1, 1e-3),))


def test_toml_round_trip_with_pieces(tmp_path):
    profile = preset_profile("a100-80gb-llama-3-8b")
    path = tmp_path / "p.toml"
    path.write_text(dumps_toml(profile.to_dict()))
    again = load_profile(str(path))
    assert again == profile and len(again.pieces) == 2
    assert load_profile(str(path), kv_capacity_tokens=500).kv_capacity_tokens == 500


def test_malformed_profile_toml(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("kv_capacity_tokens = 100\n[iteration_time]\nper_kv_token_s = 1e-6\n")
    with pytest.raises(InputError, match="base_s"):
        load_profile(str(path))
    path.write_text("kv_capacity_tokens = [\n")
    with pytest.raises(InputError, match="p.toml"):
        load_profile(str(path))


def test_kv_bytes_per_token_matches_spec_table():
    assert MODELS["llama-2-7b"].kv_bytes_per_token == 524_288
    assert MODELS["llama-3-8b"].kv_bytes_per_token == 131_072
    assert MODELS["llama-2-70b"].kv_bytes_per_token == 327_680


def test_memory_planner_hand_solved():
    # (80 GiB x 0.9 - 2 B x 6.74e9) / 524288 B
    expected = int((80 * 2**30 * 0.9 - 2 * 6.74e9) // 524_288)
    assert kv_capacity_tokens(GPUS["a100-80gb"], MODELS["llama-2-7b"]) == expected
    assert 115_000 < expected < 125_000  # Vidur: about 122,750 (it leaves out the embeddings)
    with pytest.raises(InputError, match="do not fit"):
        kv_capacity_tokens(GPUS["a100-80gb"], MODELS["llama-2-70b"])


def test_piecewise_fit_recovers_synthetic_curve():
    tokens = np.arange(1, 2049, 16, dtype=float)
    truth = np.maximum(0.009, 0.004 + 6e-5 * tokens)
    fit = fit_piecewise(Measurements(tokens, truth, "synthetic"))
    assert math.isclose(fit.floor_s, 0.009, rel_tol=1e-6)
    assert math.isclose(fit.slope_s_per_token, 6e-5, rel_tol=1e-6)
    assert math.isclose(fit.intercept_s, 0.004, rel_tol=1e-5)
    assert fit.mape < 1e-6 and fit.r2 > 1 - 1e-9


@pytest.mark.parametrize("name", ["a100-80gb-llama-2-7b", "h100-80gb-llama-2-7b", "a100-80gb-llama-3-8b"])
def test_presets_reproduce_from_measurements(shared_data, name):
    preset = preset_profile(name)
    folder = {
        "a100-80gb-llama-2-7b": "a100/Llama-2-7b-hf",
        "h100-80gb-llama-2-7b": "h100/Llama-2-7b-hf",
        "a100-80gb-llama-3-8b": "a100/Meta-Llama-3-8B",
    }[name]
    gpu, model = gpu_spec(preset.fit["gpu"]), model_shape(preset.fit["model"])
    refit = fit_vidur_profile(shared_data / "profiles" / "vidur" / folder / "mlp.csv", gpu, model, name)
    np.testing.assert_allclose(refit.coefficient_matrix(), preset.coefficient_matrix(), rtol=1e-6)
    assert refit.kv_capacity_tokens == preset.kv_capacity_tokens
    assert refit.fit["mape"] < 0.06 and refit.fit["r2"] > 0.99
    # The fitted floor sits where the README says (about 9.3 ms for A100 Llama-2-7B).
    measured = read_vidur_mlp_csv(shared_data / "profiles" / "vidur" / folder / "mlp.csv", model.layers)
    small = measured.time_s[measured.tokens <= 32]
    assert abs(preset.fit["floor_s"] - np.median(small)) / np.median(small) < 0.1


def test_malformed_profiling_csv(tmp_path):
    path = tmp_path / "mlp.csv"
    path.write_text("num_tokens,num_tensor_parallel_workers\n1,1\n")
    with pytest.raises(InputError, match="time_stats"):
        read_vidur_mlp_csv(path, 32)


def _sarathi_like_log(seed: int, unit: float = 1.0):
    import numpy as np

    from fluidopt.timing.fit.batch_log import BatchLog

    rng = np.random.default_rng(seed)
    decodes = rng.integers(1, 300, 500).astype(float)
    prefill = np.maximum(512 - decodes, 0)  # a full token budget: prefill and decodes move against each other
    cached = decodes * rng.integers(300, 700, 500)
    kv = cached + prefill + decodes
    seconds = np.maximum(0.040, 0.004 + 8.0e-5 * prefill + 6e-8 * kv) * (1 + 0.005 * rng.standard_normal(500))
    return BatchLog(prefill, decodes, cached, seconds * unit, "sarathi-like.csv")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_log_fit_non_negative_pieces_within_two_percent(seed):
    from fluidopt.timing.fit.batch_log import fit_batch_log_profile

    profile, quality = fit_batch_log_profile(_sarathi_like_log(seed), "log", 100_000)
    assert quality.mape < 0.02
    assert all(min(p.base_s, p.per_kv_token_s, p.per_prefill_token_s, p.per_sequence_s) >= 0 for p in profile.pieces)


def test_batch_log_in_milliseconds_is_refused():
    from fluidopt.errors import InputError
    from fluidopt.timing.fit.batch_log import fit_batch_log_profile

    with pytest.raises(InputError, match="milliseconds"):
        fit_batch_log_profile(_sarathi_like_log(0, unit=1000.0), "log", 100_000)


def test_batch_log_residual_plot(tmp_path, capsys):
    import matplotlib.pyplot as plt
    import numpy as np

    from fluidopt.cli import main
    from fluidopt.plotting import plot_batch_log_fit
    from fluidopt.timing.fit.batch_log import batch_log_predictions, fit_batch_log_profile

    log = _sarathi_like_log(0)
    profile, quality = fit_batch_log_profile(log, "log", 100_000)
    predicted, piece = batch_log_predictions(log, profile)
    assert np.mean(np.abs(predicted - log.seconds) / log.seconds) == pytest.approx(quality.mape, rel=1e-9)
    assert set(np.unique(piece)) <= set(range(len(profile.pieces)))
    figure = plot_batch_log_fit(log, profile)
    left, right = figure.axes
    assert "logged" in left.get_xlabel() and "(ms)" in left.get_ylabel() and "(%)" in right.get_ylabel()
    assert len(left.get_legend().get_texts()) == len(profile.pieces) + 1
    plt.close(figure)

    csv = tmp_path / "log.csv"
    rows = ["prefill_tokens,decode_sequences,cached_tokens,seconds"]
    rows += [
        f"{p:g},{d:g},{c:g},{s:.6f}"
        for p, d, c, s in zip(log.prefill_tokens, log.decode_sequences, log.cached_tokens, log.seconds)
    ]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    png = tmp_path / "fit.png"
    code = main(["profile", "fit", str(csv), "--batch-log", "--kv-capacity-tokens", "100000", "--plot", str(png)])
    assert code == 0 and png.stat().st_size > 10_000 and f"wrote {png}" in capsys.readouterr().out
    code = main(["profile", "fit", str(csv), "--gpu", "a100-80gb", "--model", "llama-2-7b", "--plot", str(png)])
    assert code == 2 and "--plot" in capsys.readouterr().err
