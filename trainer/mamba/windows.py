"""Samples for the forecasters, and leak-free ways to split them by time (seed P0-1).

A sample is a decision day t: its input is the feature window of days t - window + 1 .. t,
its targets the log-return and log realised variance over days t + 1 .. t + h for each
horizon h. Its span is therefore days t - window + 1 .. t + max(horizons). Splits are by
time, and a purge removes training samples until no training span (inputs or labels)
touches any validation span: nothing of the validation period leaks into training, and no
label is shared. The forecasters use no augmentation; if one is added, it must be applied
to `Fold.train` only, after the split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from shared.features import LOOKBACK, log_returns

HORIZONS = (1, 5, 10, 30)
_VARIANCE_FLOOR = 1e-12


def targets(closes: np.ndarray, horizons: tuple[int, ...] = HORIZONS) -> np.ndarray:
    """[n, 2 * len(horizons)]: per horizon, sum of the next h log-returns and log of their mean square.

    NaN where the horizon runs past the data. Labels look ahead by definition; they are
    never features.
    """
    returns = log_returns(closes)
    n = len(returns)
    columns = []
    for h in horizons:
        total, variance = np.full(n, np.nan), np.full(n, np.nan)
        if n > h:
            future = sliding_window_view(returns[1:], h)  # row t: returns of days t + 1 .. t + h
            total[: n - h] = future.sum(axis=1)
            variance[: n - h] = np.log(np.maximum((future * future).mean(axis=1), _VARIANCE_FLOOR))
        columns += [total, variance]
    return np.stack(columns, axis=1)


def decision_days(n_days: int, window: int, max_horizon: int) -> np.ndarray:
    """Days with a full feature window behind them and every label ahead of them."""
    return np.arange(LOOKBACK + window - 1, n_days - max_horizon)


@dataclass(frozen=True)
class Fold:
    train: np.ndarray  # decision days
    test: np.ndarray

    def gap(self, window: int, max_horizon: int) -> int:
        """Days between the last training span's end and the first test span's start (> 0: disjoint)."""
        return int(self.test[0] - window + 1) - int(self.train[-1] + max_horizon)


def _purged(train: np.ndarray, first_test: int, window: int, max_horizon: int) -> np.ndarray:
    """Training days whose span ends before the first test span begins."""
    return train[train + max_horizon < first_test - window + 1]


def split_by_time(days: np.ndarray, test_fraction: float, window: int, max_horizon: int) -> Fold:
    """The last `test_fraction` of the days for validation, the purged rest for training."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    cut = round(len(days) * (1 - test_fraction))
    test = days[cut:]
    train = _purged(days[:cut], int(test[0]), window, max_horizon) if len(test) else test
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"{len(days)} decision days are too few to split with a purge of {window + max_horizon}"
        )
    return Fold(train, test)


def walk_forward(
    days: np.ndarray, first_train: int, step: int, window: int, max_horizon: int
) -> list[Fold]:
    """Expanding-window folds: train on everything before a test block of `step` days, purged."""
    folds = []
    for start in range(first_train, len(days), step):
        test = days[start : start + step]
        train = _purged(days[:start], int(test[0]), window, max_horizon)
        if len(train):
            folds.append(Fold(train, test))
    return folds
