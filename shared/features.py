"""Causal features of a daily close series, shared by the trainer and the server's Forecast.

Every feature of day t is computed from the closes of days t - LOOKBACK .. t alone, each over
a fixed-length trailing window: never a whole-series statistic (the seed's P0-2), and never a
recursion from the start of the series, so the server, which sees only the closes a request
sends, computes the very same numbers (bit for bit) as the trainer did on the full history.
Normalisation is separate (`Standardizer`), fitted on a training fold only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Trailing windows, in trading days, of the realised-variance features (HAR-style: day, week, month, quarter).
VARIANCE_WINDOWS = (1, 5, 22, 66)
FEATURE_NAMES = ("log_return", *(f"log_rv_{w}" for w in VARIANCE_WINDOWS))
# The first row with every feature defined; it needs LOOKBACK + 1 closes.
LOOKBACK = max(VARIANCE_WINDOWS)
# Keeps log(0) finite on a day without price change; far below any real daily variance.
_VARIANCE_FLOOR = 1e-12


def log_returns(closes: np.ndarray) -> np.ndarray:
    """r[t] = ln(close[t] / close[t-1]); r[0] is NaN."""
    closes = np.asarray(closes, dtype=np.float64)
    returns = np.full(len(closes), np.nan)
    returns[1:] = np.log(closes[1:] / closes[:-1])
    return returns


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of values[t - window + 1 .. t], NaN until the window is full; each window summed on its own."""
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        out[window - 1 :] = sliding_window_view(values, window).mean(axis=1)
    return out


def causal_features(closes: np.ndarray) -> np.ndarray:
    """[len(closes), len(FEATURE_NAMES)] features; rows before LOOKBACK hold NaN."""
    returns = log_returns(closes)
    squared = returns * returns
    columns = [returns]
    for window in VARIANCE_WINDOWS:
        columns.append(np.log(np.maximum(_trailing_mean(squared, window), _VARIANCE_FLOOR)))
    features = np.stack(columns, axis=1)
    features[:LOOKBACK] = np.nan  # the longest window is not full before LOOKBACK returns
    return features


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean and standard deviation, fitted on training rows only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> Standardizer:
        if len(rows) < 2 or not np.isfinite(rows).all():
            raise ValueError(
                f"need at least 2 finite rows to fit, got {len(rows)} (with NaN: {not np.isfinite(rows).all()})"
            )
        return cls(rows.mean(axis=0), np.maximum(rows.std(axis=0), 1e-12))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.mean) / self.std

    def as_meta(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_meta(cls, meta: dict[str, list[float]]) -> Standardizer:
        return cls(
            np.asarray(meta["mean"], dtype=np.float64), np.asarray(meta["std"], dtype=np.float64)
        )
