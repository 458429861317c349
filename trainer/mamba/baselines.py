"""The classical volatility forecasts a forecaster must beat: EWMA, GARCH(1,1) and HAR-RV.

Every baseline forecasts what the Mamba forecasts (windows.targets): the mean daily
variance over days t + 1 .. t + h (the mean squared log-return, not demeaned) for each
horizon h, made on day t. Each has the same two steps:

    fitted = Baseline.fit(closes[: fit_day + 1], horizons)   # parameters from data up to fit_day
    variance = fitted.forecast(closes, days)                 # [len(days), H], data up to each day

`fit` is handed only the closes up to the fit day, so it cannot see later data; `forecast`
runs a filter forward through the days or reads causal features, so a forecast made on day
t uses closes up to t alone (tests/test_mamba_evaluation.py changes later prices to check).

- EWMA: RiskMetrics, sigma2_{t+1} = lambda sigma2_t + (1 - lambda) r_t^2 with lambda = 0.94,
  started from r_1^2 (forgotten after a few months: 0.94^100 = 0.2%); flat over horizons.
- GARCH(1,1) with Student-t innovations and zero mean, estimated by the `arch` package on
  returns in percent (its recommended scale). The t, as in DESIGN.md's measurements: with
  normal innovations one crash day (AAPL's -52% of 2000-09-29) drags alpha to 0.7. The
  filter is the one arch runs (same backcast start, checked against arch in the tests),
  written out here so its causality is plain; the h-day forecast is the exact expectation
  of the model (Garch11.expected_square).
- HAR-RV (Corsi 2009) in logs: per horizon, OLS of the log realised variance on a constant
  and the log 1-, 5- and 22-day trailing realised variances (shared.features), over every
  day whose label is complete by the fit day. exp of a log forecast is a median, not a mean,
  so the forecast is scaled by the mean of exp(residual) on the fitted rows (Duan's
  smearing), which QLIKE would otherwise punish as a steady under-forecast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from arch import arch_model

from shared.features import FEATURE_NAMES, causal_features, log_returns
from trainer.mamba.synthetic import Garch11
from trainer.mamba.windows import targets

EWMA_DECAY = 0.94
# arch's optimiser is well conditioned when daily returns are in percent.
_PERCENT = 100.0
_HAR_COLUMNS = [FEATURE_NAMES.index(f"log_rv_{w}") for w in (1, 5, 22)]


@dataclass(frozen=True)
class Ewma:
    horizons: tuple[int, ...]
    decay: float = EWMA_DECAY

    @classmethod
    def fit(cls, closes: np.ndarray, horizons: tuple[int, ...]) -> Ewma:
        """Nothing to estimate: lambda is RiskMetrics' fixed 0.94."""
        return cls(horizons)

    def forecast(self, closes: np.ndarray, days: np.ndarray) -> np.ndarray:
        squared = log_returns(closes) ** 2
        next_variance = np.full(len(closes), np.nan)  # [t]: the forecast of r_{t+1}^2 made on day t
        next_variance[1] = squared[1]
        for t in range(2, len(closes)):
            next_variance[t] = self.decay * next_variance[t - 1] + (1 - self.decay) * squared[t]
        return np.repeat(next_variance[days, None], len(self.horizons), axis=1)


@dataclass(frozen=True)
class Garch:
    horizons: tuple[int, ...]
    process: Garch11  # per day, in log-return units

    @classmethod
    def fit(cls, closes: np.ndarray, horizons: tuple[int, ...]) -> Garch:
        returns = _PERCENT * log_returns(closes)[1:]
        model = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False)
        fitted = model.fit(disp="off")
        if fitted.convergence_flag != 0:
            raise FloatingPointError(
                f"GARCH(1,1) estimation did not converge on {len(returns)} returns"
            )
        omega, alpha, beta = (fitted.params[k] for k in ("omega", "alpha[1]", "beta[1]"))
        return cls(horizons, Garch11(omega / _PERCENT**2, alpha, beta, mu=0.0))

    def forecast(self, closes: np.ndarray, days: np.ndarray) -> np.ndarray:
        returns = log_returns(closes)
        # arch's backcast: an exponentially weighted mean of the first 75 squared returns, so
        # forecasts are causal from day 75 on (decision days start at LOOKBACK + window - 1).
        start = returns[1:76] ** 2
        weights = EWMA_DECAY ** np.arange(len(start))
        backcast = float(np.sum(start * weights) / np.sum(weights))
        p = self.process
        # [t]: sigma2_{t+1}, the variance of r_{t+1} given returns up to day t.
        next_variance = np.full(len(closes), np.nan)
        variance = p.omega + (p.alpha + p.beta) * backcast  # sigma2_1, from the backcast alone
        for t in range(1, len(closes)):
            variance = p.omega + p.alpha * returns[t] ** 2 + p.beta * variance
            next_variance[t] = variance
        return p.expected_square(next_variance[days], self.horizons)


@dataclass(frozen=True)
class Har:
    horizons: tuple[int, ...]
    coefficients: np.ndarray  # [H, 4]: constant, log RV 1, 5, 22 days
    smearing: np.ndarray  # [H]: mean exp(residual) on the fitted rows

    @classmethod
    def fit(cls, closes: np.ndarray, horizons: tuple[int, ...]) -> Har:
        labels = targets(closes, horizons)[:, 1::2]  # NaN where a label runs past the fit day
        return cls.from_rows(horizons, _har_regressors(closes), labels)

    @classmethod
    def from_rows(
        cls, horizons: tuple[int, ...], regressors: np.ndarray, labels: np.ndarray
    ) -> Har:
        """OLS per horizon over the rows whose regressors and label of that horizon are finite."""
        coefficients, smearing = [], []
        for i in range(len(horizons)):
            rows = np.isfinite(regressors).all(axis=1) & np.isfinite(labels[:, i])
            if rows.sum() <= regressors.shape[1]:
                raise ValueError(f"{rows.sum()} rows are too few to fit HAR at {horizons[i]} days")
            x, y = regressors[rows], labels[rows, i]
            b = np.linalg.lstsq(x, y, rcond=None)[0]
            coefficients.append(b)
            smearing.append(np.mean(np.exp(y - x @ b)))
        return cls(horizons, np.array(coefficients), np.array(smearing))

    def forecast(self, closes: np.ndarray, days: np.ndarray) -> np.ndarray:
        log_variance = _har_regressors(closes)[days] @ self.coefficients.T
        return np.exp(log_variance) * self.smearing


def _har_regressors(closes: np.ndarray) -> np.ndarray:
    """[n, 4]: 1 and the log 1-, 5- and 22-day trailing realised variances (NaN before LOOKBACK)."""
    features = causal_features(closes)[:, _HAR_COLUMNS]
    return np.column_stack([np.ones(len(features)), features])


BASELINES = {"ewma": Ewma, "garch": Garch, "har": Har}
