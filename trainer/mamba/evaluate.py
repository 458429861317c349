"""Walk-forward evaluation of the Mamba forecaster against EWMA, GARCH(1,1) and HAR-RV.

    trainer evaluate --model mamba --symbols AAPL,MSFT --data DIR [--report FILE.json]
    trainer evaluate --model mamba --synthetic garch [--quick] [--refit-days N] [--seed S]

An expanding window (windows.walk_forward): the first `initial_days` decision days train,
the next `refit_days` (a year by default) are forecast out of sample, then everything
before the next block trains again, and so on to the end of the series. Training days are
purged so that no training window or label touches a test window. Each refit after the
first continues from the previous fold's weights for at most `refit_epochs` epochs (a
year of new data moves the model a little; it need not learn from scratch); each uses its
own training days for everything: the scaler, early stopping on their last 20%. The
baselines are refitted on the same schedule from the closes up to the first day of the
block, then filter day by day with their parameters fixed. Nothing is tuned on the
out-of-sample blocks: they are forecast once, then scored (scoring.py).

The Mamba forecast is the mean of MambaConfig.members networks from consecutive seeds,
trained by train.train_symbol as `trainer train` trains the model it publishes; a refit
warm-starts each member from its counterpart. The members, and the refits' epoch limit,
were chosen on development runs that never saw an evaluated series: walk-forward on IBM
and GOOG and a synthetic GARCH series of another seed. There one network's 30-day QLIKE
moved by up to +-40% with its seed alone; three members averaged most of that away.

`--synthetic garch` generates a GARCH(1,1) series (SYNTHETIC_GARCH, 3,270 days as the
sample CSVs, 1,000 with --quick; the seed is --seed) and evaluates it like a symbol, with
one more forecaster, "true": the exact expectation of the generating process given its
true conditional variance, the best any forecaster can do on average.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from shared.features import causal_features
from shared.forecast_scale import ANCHOR_COLUMN, TRADING_DAYS_PER_YEAR, decode
from trainer.mamba.baselines import BASELINES
from trainer.mamba.data import PriceHistory
from trainer.mamba.synthetic import Garch11, garch11
from trainer.mamba.train import MambaConfig, train_symbol
from trainer.mamba.windows import decision_days, targets, walk_forward

log = logging.getLogger(__name__)

# Daily parameters of an equity-like series: 16% a year on average, shocks with a half-life
# of about five weeks (alpha + beta = 0.98).
SYNTHETIC_GARCH = Garch11(omega=2e-6, alpha=0.08, beta=0.9, mu=0.0003)
SYNTHETIC_DAYS, SYNTHETIC_DAYS_QUICK = 3270, 1000


@dataclass(frozen=True)
class EvaluationConfig:
    mamba: MambaConfig = field(default_factory=MambaConfig)
    refit_days: int = 252  # a trading year
    initial_days: int = 756  # decision days before the first forecast: three years
    refit_epochs: int = 4  # the most a warm-started refit may run

    @classmethod
    def quick(cls, **overrides: Any) -> EvaluationConfig:
        """One small network, two years before the first forecast: seconds, for tests."""
        return replace(cls(MambaConfig.quick(), initial_days=504, refit_epochs=2), **overrides)

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Forecasts:
    """Out-of-sample forecasts of one series and what was realised, on its test days."""

    symbol: str
    horizons: tuple[int, ...]
    days: np.ndarray  # decision days (indices into the series), oldest first
    dates: np.ndarray  # their dates
    realised_variance: np.ndarray  # [n, H] mean squared daily log-return over days t+1 .. t+h
    realised_return: np.ndarray  # [n, H] log-return over days t+1 .. t+h
    variance: dict[str, np.ndarray]  # forecaster -> [n, H] forecast of realised_variance
    mamba_return: np.ndarray  # [n, H]
    refits: int
    mamba_seconds: float  # training time of all refits


def walk_forward_forecasts(history: PriceHistory, config: EvaluationConfig) -> Forecasts:
    closes, horizons, window = history.close, config.mamba.horizons, config.mamba.window
    days = decision_days(len(closes), window, max(horizons))
    folds = walk_forward(days, config.initial_days, config.refit_days, window, max(horizons))
    if not folds:
        raise ValueError(
            f"{history.symbol}: {len(days)} decision days leave none to forecast after the "
            f"first {config.initial_days}; need a longer series"
        )
    anchor = causal_features(closes)[:, ANCHOR_COLUMN]
    variance: dict[str, list[np.ndarray]] = {name: [] for name in ("mamba", *BASELINES)}
    returns, seconds, model = [], 0.0, None
    for k, fold in enumerate(folds, 1):
        started = time.perf_counter()
        refit = config.mamba if model is None else replace(config.mamba, epochs=config.refit_epochs)
        result = train_symbol(closes, refit, fold.train, warm_start=model)
        model, seconds = result.model, seconds + result.seconds
        log_return, volatility = decode(
            result.predict(closes, fold.test), anchor[fold.test], horizons
        )
        returns.append(log_return)
        variance["mamba"].append(volatility**2 / TRADING_DAYS_PER_YEAR)
        # The baselines' parameters come from the data up to the block's first day.
        seen = closes[: fold.test[0] + 1]
        for name, baseline in BASELINES.items():
            variance[name].append(baseline.fit(seen, horizons).forecast(closes, fold.test))
        log.info(
            "%s fold %d/%d: trained on %d days (%d epochs, %.1f s), forecast %s .. %s",
            history.symbol,
            k,
            len(folds),
            len(fold.train),
            sum(result.epochs_run),
            time.perf_counter() - started,
            history.dates[fold.test[0]],
            history.dates[fold.test[-1]],
        )
    test_days = np.concatenate([fold.test for fold in folds])
    labels = targets(closes, horizons)[test_days]
    return Forecasts(
        symbol=history.symbol,
        horizons=horizons,
        days=test_days,
        dates=history.dates[test_days],
        realised_variance=np.exp(labels[:, 1::2]),
        realised_return=labels[:, 0::2],
        variance={name: np.concatenate(blocks) for name, blocks in variance.items()},
        mamba_return=np.concatenate(returns),
        refits=len(folds),
        mamba_seconds=seconds,
    )


def synthetic_garch_forecasts(n_days: int, seed: int, config: EvaluationConfig) -> Forecasts:
    """Forecasts of a SYNTHETIC_GARCH series, with the true process's own as "true"."""
    history, conditional_variance = garch11(n_days, SYNTHETIC_GARCH, seed)
    forecasts = walk_forward_forecasts(history, config)
    # conditional_variance[t + 1] is sigma2_{t+1}, known on day t.
    forecasts.variance["true"] = SYNTHETIC_GARCH.expected_square(
        conditional_variance[forecasts.days + 1], forecasts.horizons
    )
    return forecasts
