"""Scores of out-of-sample forecasts: QLIKE and MSE on variance, Diebold-Mariano, returns.

QLIKE, realised / forecast - log(realised / forecast) - 1, is the loss for variance
forecasts that ranks them as the true variance would even when the realised variance is a
noisy proxy (Patton 2011); MSE on the variance is reported beside it, dominated as it is by
a few crash days. The Diebold-Mariano statistic is the mean loss differential over its
standard error; an h-day target overlaps the next h - 1 ones, so the differentials are
autocorrelated up to lag h - 1, hence Newey-West (Bartlett-weighted) standard errors with
that lag. Negative: the first forecast has the lower loss; beyond +-1.96, significantly so
at 5% (normal approximation). Returns: they are nearly unforecastable, so a return
forecast is scored against the zero forecast, and its direction against the base rate of
up moves in the same period, not against a coin.
"""

from __future__ import annotations

import numpy as np


def qlike(realised: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Elementwise QLIKE loss of variance forecasts; 0 exactly when forecast == realised."""
    ratio = realised / forecast
    return ratio - np.log(ratio) - 1.0


def newey_west_variance(values: np.ndarray, lag: int) -> float:
    """Long-run variance of a series: autocovariances up to `lag` with Bartlett weights.

    The weights 1 - k / (lag + 1) keep the estimate non-negative (Newey and West 1987).
    """
    centred = values - values.mean()
    n = len(centred)
    variance = centred @ centred / n
    for k in range(1, lag + 1):
        variance += 2 * (1 - k / (lag + 1)) * (centred[k:] @ centred[:-k]) / n
    return float(variance)


def diebold_mariano(loss: np.ndarray, benchmark_loss: np.ndarray, lag: int) -> float:
    """t-statistic of mean(loss - benchmark_loss) with Newey-West errors of `lag` lags."""
    differential = np.asarray(loss - benchmark_loss, dtype=np.float64)
    if len(differential) <= lag + 1:
        raise ValueError(f"{len(differential)} losses are too few for {lag} Newey-West lags")
    return float(
        differential.mean() / np.sqrt(newey_west_variance(differential, lag) / len(differential))
    )


def score_horizon(
    realised_variance: np.ndarray,
    variance: dict[str, np.ndarray],
    realised_return: np.ndarray,
    forecast_return: np.ndarray,
    horizon: int,
    model: str = "mamba",
) -> dict[str, dict[str, float]]:
    """Every score of one horizon: per forecaster QLIKE and MSE, DM of `model` against the rest."""
    losses = {name: qlike(realised_variance, f) for name, f in variance.items()}
    # Daily variance in percent squared: the MSEs then read as numbers, not 1e-8s.
    squared = {name: ((realised_variance - f) * 1e4) ** 2 for name, f in variance.items()}
    return {
        "qlike": {name: float(v.mean()) for name, v in losses.items()},
        "mse_variance_pct2": {name: float(v.mean()) for name, v in squared.items()},
        "dm_qlike": {
            name: diebold_mariano(losses[model], losses[name], horizon - 1)
            for name in variance
            if name != model
        },
        "returns": {
            "mse": float(np.mean((realised_return - forecast_return) ** 2)),
            "mse_zero": float(np.mean(realised_return**2)),
            "direction_accuracy": float(np.mean((forecast_return > 0) == (realised_return > 0))),
            "up_rate": float(np.mean(realised_return > 0)),
        },
    }
