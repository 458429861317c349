"""Synthetic daily prices with known parameters, to check forecasters against the truth.

Real data never reveals its true volatility; these series do. GBM has constant volatility
(a forecaster should learn nothing beyond it); GARCH(1,1) has clustered volatility whose
true conditional variance is returned with the prices, so a forecast can be scored
against the variance that generated each day. All parameters are per trading day, and a
seed makes every series reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.mamba.data import PriceHistory

FIRST_DAY = np.datetime64("2000-01-03", "D")  # a Monday
VOLUME = 1e6
# High and Low extend past the open and close by |N(0, 1)| times this fraction of the
# day's volatility: enough to look like a bar, small enough not to matter to a forecast.
_WICK = 0.5


@dataclass(frozen=True)
class Garch11:
    """sigma2_t = omega + alpha * (r_{t-1} - mu)^2 + beta * sigma2_{t-1}; r_t has mean mu."""

    omega: float
    alpha: float
    beta: float
    mu: float

    def __post_init__(self) -> None:
        if not (self.omega > 0 and self.alpha >= 0 and self.beta >= 0):
            raise ValueError(f"need omega > 0, alpha >= 0, beta >= 0; got {self}")
        if self.alpha + self.beta >= 1:
            raise ValueError(f"need alpha + beta < 1 for a finite variance; got {self}")

    @property
    def unconditional_variance(self) -> float:
        """The long-run daily variance omega / (1 - alpha - beta) that sigma2_t reverts to."""
        return self.omega / (1 - self.alpha - self.beta)

    def expected_square(self, next_variance: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray:
        """[n, H]: the expected mean of r^2 over days t + 1 .. t + h, made on day t.

        `next_variance` is sigma2_{t+1}, already known on day t. The process reverts to V at
        rate alpha + beta, E_t sigma2_{t+k} = V + (alpha + beta)^(k-1) (sigma2_{t+1} - V),
        and E r^2 = mu^2 + sigma2: exactly the quantity windows.targets measures.
        """
        v = self.unconditional_variance
        persistence = self.alpha + self.beta
        decay = np.array([np.mean(persistence ** np.arange(h)) for h in horizons])
        return self.mu**2 + v + decay * (np.asarray(next_variance)[:, None] - v)


def _check_size(n_days: int, start_price: float) -> None:
    if n_days < 1:
        raise ValueError(f"n_days must be >= 1, got {n_days}")
    if not start_price > 0:
        raise ValueError(f"start_price must be > 0, got {start_price}")


def _history(
    symbol: str,
    returns: np.ndarray,
    variance: np.ndarray,
    rng: np.random.Generator,
    start_price: float,
) -> PriceHistory:
    """Bars whose close-to-close log-returns are `returns`; each opens at the previous close."""
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([start_price], close[:-1]))
    wicks = np.abs(rng.standard_normal((2, len(returns)))) * _WICK * np.sqrt(variance)
    return PriceHistory(
        symbol=symbol,
        dates=np.busday_offset(FIRST_DAY, np.arange(len(returns)), roll="forward"),
        open=open_,
        # exp(>= 0) >= 1, so High >= max(Open, Close) and Low <= min(Open, Close) exactly.
        high=np.maximum(open_, close) * np.exp(wicks[0]),
        low=np.minimum(open_, close) * np.exp(-wicks[1]),
        close=close,
        volume=np.full(len(returns), VOLUME),
    )


def gbm(
    n_days: int, mu: float, sigma: float, seed: int, start_price: float = 100.0
) -> PriceHistory:
    """Geometric Brownian motion: E[close_t / close_{t-1}] = exp(mu), log-return stdev sigma.

    The daily log-return is therefore mu - sigma^2 / 2 + sigma * z_t with z_t ~ N(0, 1).
    """
    _check_size(n_days, start_price)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    rng = np.random.default_rng(seed)
    returns = mu - sigma**2 / 2 + sigma * rng.standard_normal(n_days)
    return _history("GBM", returns, np.full(n_days, sigma**2), rng, start_price)


def garch11(
    n_days: int, params: Garch11, seed: int, start_price: float = 100.0
) -> tuple[PriceHistory, np.ndarray]:
    """GARCH(1,1) prices and the true conditional variance sigma2_t of each day's return.

    sigma2_t is the variance of r_t = mu + sqrt(sigma2_t) * z_t given days up to t - 1,
    z_t ~ N(0, 1); the first day starts from the unconditional variance, so the series has
    no burn-in transient.
    """
    _check_size(n_days, start_price)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n_days)
    variance = np.empty(n_days)
    shocks = np.empty(n_days)
    variance[0] = params.unconditional_variance
    shocks[0] = np.sqrt(variance[0]) * z[0]
    for t in range(1, n_days):
        previous = params.alpha * shocks[t - 1] ** 2 + params.beta * variance[t - 1]
        variance[t] = params.omega + previous
        shocks[t] = np.sqrt(variance[t]) * z[t]
    history = _history("GARCH11", params.mu + shocks, variance, rng, start_price)
    return history, variance
