"""Training one symbol's forecaster: leak-free data, QLIKE on variance, early stopping, export.

Data flow, in the order that keeps it honest: causal features and labels from the full
series; split by time with a purge (windows.split_by_time); the Standardizer fitted on the
rows the training windows read and nothing later; validation windows never touched by
training (no augmentation anywhere). Loss: QLIKE on the anchored log variance of each
horizon (the standard loss for variance forecasts; robust to the noise of realised
variance) plus squared error on the volatility-scaled returns.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from shared.features import LOOKBACK, Standardizer, causal_features
from shared.forecast_scale import ANCHOR_COLUMN, encode
from trainer.mamba.model import MambaForecaster
from trainer.mamba.windows import HORIZONS, decision_days, split_by_time, targets


@dataclass(frozen=True)
class MambaConfig:
    window: int = 64
    horizons: tuple[int, ...] = HORIZONS
    d_model: int = 16
    layers: int = 1
    heads: int = 4
    d_state: int = 16
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    validation_fraction: float = 0.2
    patience: int = 5
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> MambaConfig:
        """A small model for two epochs: seconds, for tests."""
        return replace(cls(d_model=8, heads=2, d_state=8, epochs=2), **overrides)

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # [n, window, features], standardised
    y_train: np.ndarray  # [n, 2 * horizons], encoded
    x_val: np.ndarray
    y_val: np.ndarray
    scaler: Standardizer
    train_days: np.ndarray
    val_days: np.ndarray


def _windows(features: np.ndarray, days: np.ndarray, window: int) -> np.ndarray:
    return np.stack([features[t - window + 1 : t + 1] for t in days]).astype(np.float32)


def build_dataset(closes: np.ndarray, config: MambaConfig) -> Dataset:
    features = causal_features(closes)
    labels = targets(closes, config.horizons)
    days = decision_days(len(closes), config.window, max(config.horizons))
    fold = split_by_time(days, config.validation_fraction, config.window, max(config.horizons))
    # Fitted on exactly the rows training windows read: none after the last training day.
    scaler = Standardizer.fit(features[LOOKBACK : fold.train[-1] + 1])
    scaled = scaler.transform(features)

    def encoded(days: np.ndarray) -> np.ndarray:
        anchor = features[days, ANCHOR_COLUMN]
        return encode(labels[days, 0::2], labels[days, 1::2], anchor, config.horizons).astype(
            np.float32
        )

    return Dataset(
        _windows(scaled, fold.train, config.window),
        encoded(fold.train),
        _windows(scaled, fold.test, config.window),
        encoded(fold.test),
        scaler,
        fold.train,
        fold.test,
    )


def forecast_loss(horizons: int) -> Any:
    """QLIKE on the anchored log variances plus squared error on the scaled returns."""

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        returns_error = tf.square(y_true[:, :horizons] - y_pred[:, :horizons])
        gap = y_true[:, horizons:] - y_pred[:, horizons:]  # log(realised / forecast variance)
        qlike = tf.exp(gap) - gap - 1.0
        return tf.reduce_mean(qlike, axis=-1) + tf.reduce_mean(returns_error, axis=-1)

    return loss


@dataclass
class MambaResult:
    model: MambaForecaster
    dataset: Dataset
    validation: dict[str, float]
    epochs_run: int
    seconds: float


def train_symbol(closes: np.ndarray, config: MambaConfig) -> MambaResult:
    keras.utils.set_random_seed(config.seed)
    data = build_dataset(closes, config)
    n_h = len(config.horizons)
    model = MambaForecaster(2 * n_h, config.d_model, config.layers, config.d_state, config.heads)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=forecast_loss(n_h))
    started = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,  # within the training fold only; the split itself is by time
        verbose=0,
        callbacks=[
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
        ],
    )
    predicted = np.asarray(model.predict(data.x_val, verbose=0))
    gap = data.y_val[:, n_h:] - predicted[:, n_h:]
    validation = {
        f"qlike_{h}d": float(np.mean(np.exp(gap[:, i]) - gap[:, i] - 1))
        for i, h in enumerate(config.horizons)
    }
    validation |= {"loss": float(min(history.history["val_loss"]))}
    if not np.isfinite(list(validation.values())).all():
        raise FloatingPointError(f"validation metrics are not finite: {validation}")
    return MambaResult(
        model, data, validation, len(history.history["loss"]), time.perf_counter() - started
    )
