"""A symbol's Mamba forecaster as the server runs it: closes -> features -> window -> decode.

The input is formed by the trainer's own code, never a copy: `causal_features` of the closes,
standardised with the scaler fitted at training (from meta.json), its last `window` rows (as
trainer/mamba/train.py's `build_dataset` forms the window of a day); the outputs are decoded
by `shared.forecast_scale.decode` against the raw anchor feature of the last day. Every
feature comes from a fixed trailing window, so the last `closes_needed` closes give the very
numbers the whole history would. `load_forecaster` checks a version before it serves;
server/hot_reload.py's `ModelFamily` keeps one per symbol in service.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from server.hot_reload import ModelCheckError, ModelFamily, open_session
from shared.artifact_store import Artifact
from shared.features import FEATURE_NAMES, LOOKBACK, Standardizer, causal_features
from shared.forecast_scale import ANCHOR_COLUMN, ANCHOR_FEATURE, decode

KIND = "mamba"
# An ordinary price path (1.5% daily moves, fixed seed) for the warm-up run of a new version.
WARM_UP_SEED, WARM_UP_DAILY_MOVE = 0, 0.015


class UnknownSymbol(LookupError):
    """Forecast for a symbol without a model in service."""


class UnforecastableCloses(ValueError):
    """Valid closes for which a model's forecast is not finite."""


@dataclass(frozen=True)
class LoadedForecaster:
    symbol: str
    version: str
    session: ort.InferenceSession
    window: int
    horizons: tuple[int, ...]
    closes_needed: int
    scaler: Standardizer

    def forecast(self, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Checked daily closes, oldest first, at least closes_needed of them ->
        (expected log-return, annualised volatility), each [len(horizons)] float64."""
        # Overflow on closes far from the training data is caught below, not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            features = causal_features(closes[-self.closes_needed :])
            x = self.scaler.transform(features[-self.window :]).astype(np.float32)
            [y] = self.session.run(["y"], {"x": x[None]})
            anchor = features[-1:, ANCHOR_COLUMN]
            log_return, volatility = decode(y.astype(np.float64), anchor, self.horizons)
        if not (np.isfinite(log_return).all() and np.isfinite(volatility).all()):
            raise UnforecastableCloses(
                f"closes: the {self.symbol} model {self.version} gives a non-finite forecast "
                f"for these closes (log_return {log_return[0].tolist()}, volatility "
                f"{volatility[0].tolist()}); they are too far from the prices it learned from"
            )
        return log_return[0], volatility[0]


def find(forecasters: ModelFamily[LoadedForecaster], symbol: str) -> LoadedForecaster:
    """The forecaster in service for `symbol`; UnknownSymbol says what is served instead."""
    forecaster = forecasters.get(symbol)
    if forecaster is None:
        served = ", ".join(forecasters.serving()) or "none"
        raise UnknownSymbol(
            f"no forecast model for symbol {symbol!r} (served: {served}); train one with "
            f"`trainer train --model mamba --symbols {symbol} --data DIR`"
        )
    return forecaster


def _warm_up_closes(n: int) -> np.ndarray:
    moves = np.random.default_rng(WARM_UP_SEED).normal(0.0, WARM_UP_DAILY_MOVE, n)
    return 100.0 * np.exp(np.cumsum(moves))


def load_forecaster(artifact: Artifact) -> LoadedForecaster:
    """Open and check one verified version; raise ModelCheckError if it is not servable."""
    meta = artifact.meta
    try:
        features = meta["features"]
        window, horizons = int(meta["window"]), tuple(int(h) for h in meta["horizons"])
        scaler = Standardizer.from_meta(features["standardizer"])
        trained = (tuple(features["names"]), features["lookback"], features["anchor"])
        closes_needed = int(features["closes_needed"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelCheckError(
            f"{artifact.path}: meta.json has no usable window, horizons or features: {error!r}"
        ) from error
    # The server computes these features; a model trained on others would get wrong inputs.
    served = (FEATURE_NAMES, LOOKBACK, ANCHOR_FEATURE)
    if trained != served or closes_needed != LOOKBACK + window:
        raise ModelCheckError(
            f"{artifact.path}: trained on features {trained} needing {closes_needed} closes; "
            f"the server computes {served}, needing lookback + window = {LOOKBACK + window}"
        )
    if {scaler.mean.shape, scaler.std.shape} != {(len(FEATURE_NAMES),)}:
        raise ModelCheckError(f"{artifact.path}: the standardizer has not one value per feature")
    session = open_session(artifact)
    interface = (
        [(i.name, i.shape[1:]) for i in session.get_inputs()],
        [(o.name, o.shape[1:]) for o in session.get_outputs()],
    )
    expected = ([("x", [window, len(FEATURE_NAMES)])], [("y", [2 * len(horizons)])])
    if window < 1 or not horizons or min(horizons) < 1 or interface != expected:
        raise ModelCheckError(
            f"{artifact.path}: interface {interface} with window {window} and horizons "
            f"{horizons} is not the forecaster contract {expected}"
        )
    model = LoadedForecaster(
        artifact.name, artifact.version, session, window, horizons, closes_needed, scaler
    )
    try:
        model.forecast(_warm_up_closes(closes_needed))
    except UnforecastableCloses as error:
        raise ModelCheckError(f"{artifact.path}: warm-up: {error}") from error
    return model
