"""Where fluidopt's nearest-key KV-save lookup and a random forest like Vidur's differ.

    pip install scikit-learn        # not a fluidopt dependency; only this script needs it
    python scripts/forest_vs_lookup.py [--seed 0]

Vidur (``SklearnExecutionTimePredictor._train_model``, ``RandomForrestExecutionTimePredictor``)
fits a ``RandomForestRegressor`` on ``num_tokens = max(chunk, batch)`` by grid search (250-750
trees, depth 8-32, min_samples_split 2-10, scored by MAPE) and tabulates its predictions at
1..4096 tokens.  This script fits such a forest to the same grid rows the preset's lookup pools
(:func:`fluidopt.timing.fit.predictor.vidur_attention_grid`, save times from the measured model) and
prints both tables where they differ by more than 20 %, plus the token counts that matter for
figure B.  The forest's randomness is seeded; its grid search uses 3 folds here (Vidur: k-fold
from its config) to keep the run short.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import fluidopt as fo
from fluidopt.timing.fit.predictor import pooled_kv_save_table, vidur_attention_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GridSearchCV

    # The grid's save times come from the packaged measured preset (fitted to the shared rows).
    measured = fo.preset_profile("a100-80gb-llama-3-8b-vidur").timing
    lookup = fo.preset_profile("a100-80gb-llama-3-8b-vidur-predictor").timing
    chunk, kv, batch = vidur_attention_grid()
    prefill_save = measured.prefill_kv_save_time(chunk, kv) / 32 * 1e3  # ms per layer, as Vidur's rows
    decode_save = measured.decode_kv_save_time(batch) / 32 * 1e3
    keys = np.concatenate([chunk, batch])[:, None]
    values = np.concatenate([prefill_save, decode_save])

    def mape(y_true, y_pred):
        return float(np.mean(np.abs(y_true - y_pred) / np.maximum(np.abs(y_true), 1e-12)) * 100)

    search = GridSearchCV(
        RandomForestRegressor(random_state=args.seed),
        {"n_estimators": [250, 500], "max_depth": [8, 16, 32], "min_samples_split": [2, 5, 10]},
        scoring=make_scorer(mape, greater_is_better=False),
        cv=3,
        n_jobs=-1,
    )
    search.fit(keys, values)
    tokens = np.arange(1, 4097)
    forest = search.best_estimator_.predict(tokens[:, None].astype(float))
    table = np.asarray(lookup.kv_save_time(tokens)) / 32 * 1e3
    grid_tokens, grid_means = pooled_kv_save_table(chunk, prefill_save, batch, decode_save)
    print(f"forest: {search.best_params_}, training MAPE {-search.best_score_:.1f} %")
    print(f"{'tokens':>7s} {'lookup':>9s} {'forest':>9s}  (ms per layer)")
    for t in (64, 256, 480, 488, 500, 504, 508, 509, 510, 511, 512, 520, 544):
        print(f"{t:>7d} {table[t - 1]:>9.4f} {forest[t - 1]:>9.4f}")
    differ = np.abs(forest - table) > 0.2 * np.maximum(table, 1e-9)
    print(f"token counts 1-4096 where they differ by more than 20 %: {int(differ.sum())}")
    spans = np.split(tokens[differ], np.where(np.diff(tokens[differ]) != 1)[0] + 1) if differ.any() else []
    print("spans:", ", ".join(f"{s[0]}-{s[-1]}" if s.size > 1 else f"{s[0]}" for s in spans[:40]))
    print(f"grid keys: {grid_tokens.size}; mean of the pooled rows at 512: {grid_means[grid_tokens == 512][0]:.4f} ms")
    out = Path("forest_vs_lookup.csv")
    np.savetxt(
        out, np.column_stack([tokens, table, forest]), delimiter=",", header="tokens,lookup_ms,forest_ms", comments=""
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
