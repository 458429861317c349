"""Causal features (seed P0-2) and leak-free splits (seed P0-1) of the forecasters' data."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.features import FEATURE_NAMES, LOOKBACK, Standardizer, causal_features
from trainer.mamba.windows import HORIZONS, decision_days, split_by_time, targets, walk_forward

WINDOW = 64


def random_closes(n, seed):
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, n)))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(LOOKBACK + 2, 400),
    cut_fraction=st.floats(0.0, 1.0),
    scale=st.floats(0.01, 100.0),
)
def test_changing_prices_after_day_t_leaves_every_feature_up_to_t_unchanged(
    seed, n, cut_fraction, scale
):
    closes = random_closes(n, seed)
    t = int(cut_fraction * (n - 1))
    changed = closes.copy()
    changed[t + 1 :] *= scale * np.exp(np.random.default_rng(seed + 1).normal(0, 0.3, n - t - 1))
    before, after = causal_features(closes), causal_features(changed)
    np.testing.assert_array_equal(
        before[: t + 1], after[: t + 1]
    )  # NaN == NaN here, bit for bit otherwise


def test_features_need_only_their_lookback_so_the_server_gets_the_same_numbers():
    closes = random_closes(1500, seed=3)
    full = causal_features(closes)
    # What the server sees: only the last LOOKBACK + WINDOW closes of the request.
    tail = causal_features(closes[-(LOOKBACK + WINDOW) :])
    np.testing.assert_array_equal(full[-WINDOW:], tail[-WINDOW:])
    assert np.isnan(full[:LOOKBACK]).all() and np.isfinite(full[LOOKBACK:]).all()
    assert full.shape[1] == len(FEATURE_NAMES)


def test_standardizer_is_fitted_on_the_rows_it_is_given_only():
    features = causal_features(random_closes(800, seed=5))[LOOKBACK:]
    train, test = features[:400], features[400:]
    scaler = Standardizer.fit(train)
    np.testing.assert_allclose(scaler.transform(train).mean(axis=0), 0, atol=1e-12)
    assert (
        Standardizer.from_meta(scaler.as_meta()).transform(test).tolist()
        == scaler.transform(test).tolist()
    )
    with pytest.raises(ValueError, match="finite"):
        Standardizer.fit(causal_features(random_closes(100, seed=1)))


def test_targets_look_only_ahead_and_match_a_direct_computation():
    closes = random_closes(300, seed=7)
    y = targets(closes)
    returns = np.diff(np.log(closes))
    t = 100
    for i, h in enumerate(HORIZONS):
        future = returns[t : t + h]  # returns of days t + 1 .. t + h
        assert y[t, 2 * i] == pytest.approx(future.sum(), abs=1e-12)
        assert y[t, 2 * i + 1] == pytest.approx(np.log(np.mean(future**2)), abs=1e-9)
    assert np.isnan(y[-max(HORIZONS) :, -1]).all()


def spans(days, window):
    return [(int(t) - window + 1, int(t) + max(HORIZONS)) for t in days]


def assert_disjoint(fold, window):
    """No validation span (inputs or labels) overlaps any training span."""
    train_end = max(end for _, end in spans(fold.train, window))
    test_start = min(start for start, _ in spans(fold.test, window))
    assert train_end < test_start
    assert fold.gap(window, max(HORIZONS)) > 0
    assert fold.train.max() < fold.test.min()  # by time, never shuffled


def test_time_split_purges_until_no_window_or_label_overlaps():
    days = decision_days(2000, WINDOW, max(HORIZONS))
    fold = split_by_time(days, 0.2, WINDOW, max(HORIZONS))
    assert_disjoint(fold, WINDOW)
    assert len(fold.test) == round(0.2 * len(days))
    # The purge takes exactly what it must: the next earlier day would overlap.
    assert fold.train[-1] + 1 + max(HORIZONS) >= fold.test[0] - WINDOW + 1


def test_walk_forward_folds_expand_and_never_overlap():
    days = decision_days(3000, WINDOW, max(HORIZONS))
    folds = walk_forward(days, first_train=750, step=252, window=WINDOW, max_horizon=max(HORIZONS))
    assert len(folds) >= 8
    for earlier, later in itertools.pairwise(folds):
        assert len(later.train) > len(earlier.train)  # expanding window
        assert later.test[0] == earlier.test[-1] + 1  # consecutive, out-of-sample blocks
    for fold in folds:
        assert_disjoint(fold, WINDOW)


def test_too_short_a_series_is_refused_clearly():
    with pytest.raises(ValueError, match="too few to split"):
        split_by_time(
            decision_days(LOOKBACK + WINDOW + 40, WINDOW, max(HORIZONS)), 0.5, WINDOW, max(HORIZONS)
        )
