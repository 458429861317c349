"""How a forecaster's outputs relate to returns and variances: shared by trainer and server.

The networks forecast relative to today's level, "anchored" (DESIGN.md section 4): a
horizon's log realised variance minus today's 22-day log realised variance, and its
log-return divided by the volatility today's variance implies over that horizon. The
trainer encodes its labels with `encode`, the server decodes the network's outputs with
`decode`; one module, so they cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from shared.features import FEATURE_NAMES

ANCHOR_FEATURE = "log_rv_22"
ANCHOR_COLUMN = FEATURE_NAMES.index(ANCHOR_FEATURE)
TRADING_DAYS_PER_YEAR = 252


def encode(
    log_return: np.ndarray, log_variance: np.ndarray, anchor: np.ndarray, horizons: tuple[int, ...]
) -> np.ndarray:
    """[n, H] returns and [n, H] log variances -> [n, 2H] network targets."""
    h = np.asarray(horizons, dtype=np.float64)
    scale = np.sqrt(h * np.exp(anchor)[:, None])
    return np.concatenate([log_return / scale, log_variance - anchor[:, None]], axis=1)


def decode(
    outputs: np.ndarray, anchor: np.ndarray, horizons: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """[n, 2H] network outputs -> (expected log-return, annualised volatility), each [n, H]."""
    h = np.asarray(horizons, dtype=np.float64)
    n = len(horizons)
    log_return = outputs[:, :n] * np.sqrt(h * np.exp(anchor)[:, None])
    daily_variance = np.exp(outputs[:, n:] + anchor[:, None])
    return log_return, np.sqrt(daily_variance * TRADING_DAYS_PER_YEAR)
