"""Training one symbol's forecaster: leak-free data, QLIKE on variance, early stopping, export.

Data flow, in the order that keeps it honest: causal features and labels from the full
series; split by time with a purge (windows.split_by_time); the Standardizer fitted on the
rows the training windows read and nothing later; validation windows never touched by
training (no augmentation anywhere). Loss: QLIKE on the anchored log variance of each
horizon (the standard loss for variance forecasts; robust to the noise of realised
variance) plus squared error on the volatility-scaled returns. The forecaster is the mean of
`members` such networks from consecutive seeds (model.ForecasterEnsemble), trained here for
both the walk-forward evaluation and the published model, so the one is the other.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from shared.features import LOOKBACK, Standardizer, causal_features
from shared.forecast_scale import ANCHOR_COLUMN, encode
from trainer.mamba.fitting import fit
from trainer.mamba.model import ForecasterEnsemble, MambaForecaster
from trainer.mamba.windows import HORIZONS, decision_days, split_by_time, targets
from trainer.safe_training import InterruptFlag


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
    # Networks from seeds seed, seed + 1, ...; the forecast is their mean. One network's
    # forecast moves with its seed alone (evaluate.py says how much); the mean much less.
    members: int = 3

    @classmethod
    def quick(cls, **overrides: Any) -> MambaConfig:
        """One small network for two epochs: seconds, for tests."""
        return replace(cls(d_model=8, heads=2, d_state=8, epochs=2, members=1), **overrides)

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


def build_dataset(
    closes: np.ndarray, config: MambaConfig, days: np.ndarray | None = None
) -> Dataset:
    """Training and validation windows from `days`, the decision days training may use.

    By default every decision day of the series; a walk-forward fold passes its (purged)
    training days, so nothing from its test span is read: its last `validation_fraction`
    validate, the purged rest train.
    """
    features = causal_features(closes)
    labels = targets(closes, config.horizons)
    if days is None:
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
    model: ForecasterEnsemble
    dataset: Dataset
    validation: dict[str, float]  # of the ensemble's forecast
    epochs_run: tuple[int, ...]  # per member
    seconds: float
    config: MambaConfig

    def predict(self, closes: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Network outputs [len(days), 2H] on decision days `days`, scaled as in training.

        Decode with shared.forecast_scale.decode and the anchor feature of the same days.
        """
        scaled = self.dataset.scaler.transform(causal_features(closes))
        windows = _windows(scaled, days, self.config.window)
        return np.asarray(self.model.predict(windows, verbose=0))


def member_checkpoints(checkpoint: Path, members: int) -> list[Path]:
    """Each member's own checkpoint, named after `checkpoint`: NAME.npz -> NAME.member-0.npz, ..."""
    return [checkpoint.with_suffix(f".member-{i}{checkpoint.suffix}") for i in range(members)]


def train_symbol(
    closes: np.ndarray,
    config: MambaConfig,
    days: np.ndarray | None = None,
    warm_start: ForecasterEnsemble | None = None,
    interrupt: InterruptFlag | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> MambaResult:
    """config.members networks on `days` (default: all; see build_dataset), each from its own
    seed and early-stopped on validation, as one ForecasterEnsemble.

    `warm_start` (an ensemble of the same config) gives each member its counterpart's weights
    to start from: a walk-forward refit then continues from the previous fold's model instead
    of from random weights. `interrupt`, `checkpoint` and `resume` are those of fitting.fit,
    with a checkpoint per member (member_checkpoints). A member that had finished keeps its
    checkpoint, which holds its last epoch, so `resume` restores it without training it
    again; the member that was interrupted goes on from its last whole epoch, and the ones
    after it start from their seeds as they would have.
    """
    data, interrupt = build_dataset(closes, config, days), interrupt or InterruptFlag()
    checkpoints: list[Path | None] = (
        member_checkpoints(checkpoint, config.members) if checkpoint else [None] * config.members
    )
    started = time.perf_counter()
    networks, epochs_run = [], []
    for member, member_checkpoint in enumerate(checkpoints):
        network, epochs = _train_network(
            data,
            replace(config, seed=config.seed + member),
            None if warm_start is None else warm_start.members[member],
            interrupt,
            member_checkpoint,
            resume,
        )
        networks.append(network)
        epochs_run.append(epochs)
    model = ForecasterEnsemble(networks)
    n_h = len(config.horizons)
    predicted = np.asarray(model.predict(data.x_val, verbose=0))
    gap = data.y_val[:, n_h:] - predicted[:, n_h:]
    validation = {
        f"qlike_{h}d": float(np.mean(np.exp(gap[:, i]) - gap[:, i] - 1))
        for i, h in enumerate(config.horizons)
    }
    # The training loss of the mean forecast itself: no member's history holds it.
    validation |= {"loss": float(tf.reduce_mean(forecast_loss(n_h)(data.y_val, predicted)))}
    if not np.isfinite(list(validation.values())).all():
        raise FloatingPointError(f"validation metrics are not finite: {validation}")
    return MambaResult(
        model, data, validation, tuple(epochs_run), time.perf_counter() - started, config
    )


def _train_network(
    data: Dataset,
    config: MambaConfig,
    warm_start: MambaForecaster | None,
    interrupt: InterruptFlag,
    checkpoint: Path | None,
    resume: bool,
) -> tuple[MambaForecaster, int]:
    """One network from config.seed, early-stopped on validation, and the epochs it ran."""
    keras.utils.set_random_seed(config.seed)
    n_h = len(config.horizons)
    model = MambaForecaster(2 * n_h, config.d_model, config.layers, config.d_state, config.heads)
    if warm_start is not None:
        model.build((None, *data.x_train.shape[1:]))
        model.set_weights(warm_start.get_weights())
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=forecast_loss(n_h))
    # Shuffled within the training fold only; the split itself is by time.
    history = fit(model, data, config, interrupt, checkpoint, resume)
    return model, len(history["loss"])
