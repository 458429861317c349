"""The forecaster's training loop, made to survive its faults as the PINN's does.

One Keras `fit` call per epoch, on an order shuffled from (seed, epoch), so any epoch can
be repeated exactly; after each, the state is checkpointed atomically. What
trainer/safe_training.py promises, here:

- NaN or inf loss: training stops and keeps the best epoch's weights (TrainingDiverged if
  no epoch finished).
- Ctrl-C / SIGTERM: the interrupt flag is checked before every batch; TrainingInterrupted
  leaves the last whole epoch's checkpoint, and `resume` continues from it to the very
  weights the uninterrupted run ends with. The checkpoint of a run that had ended (early
  stopped or out of epochs) resumes to that end without another epoch.
- Out of memory: the epoch is repeated from its start with half the batch (Fallbacks).

Early stopping on the validation loss restores the best weights, as Keras' EarlyStopping
with restore_best_weights would.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from trainer.safe_training import (
    Fallbacks,
    FaultInjector,
    InterruptFlag,
    TrainingDiverged,
    load_checkpoint,
    save_checkpoint,
)

if TYPE_CHECKING:
    from trainer.mamba.train import Dataset, MambaConfig

log = logging.getLogger(__name__)
MIN_BATCH_SIZE = 8
_GROUPS = ("weights", "optimizer", "best_weights")


class _BatchHooks(keras.callbacks.Callback):
    """Before every batch: the interrupt flag, and the faults a test injected."""

    def __init__(
        self, interrupt: InterruptFlag, faults: FaultInjector, epoch: int, rows: int
    ) -> None:
        super().__init__()
        self.interrupt, self.faults, self.epoch, self.rows = interrupt, faults, epoch, rows

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.interrupt.check()
        self.faults.before_step(self.epoch, self.rows)


@dataclass
class FitState:
    """What a checkpoint holds: enough to go on exactly where an epoch ended."""

    epoch: int = 0  # epochs finished
    best_loss: float = float("inf")
    stale: int = 0  # epochs since the best one
    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": [], "val_loss": []})
    weights: list[np.ndarray] = field(default_factory=list)
    optimizer: list[np.ndarray] = field(default_factory=list)
    best_weights: list[np.ndarray] = field(default_factory=list)

    def save(self, path: Path, config: dict[str, Any]) -> None:
        arrays = {
            f"{group}_{i}": array
            for group in _GROUPS
            for i, array in enumerate(getattr(self, group))
        }
        meta = {"epoch": self.epoch, "best_loss": self.best_loss, "stale": self.stale}
        counts = {group: len(getattr(self, group)) for group in _GROUPS}
        save_checkpoint(
            path, arrays, meta | {"history": self.history, "config": config, "counts": counts}
        )

    @classmethod
    def load(cls, path: Path, config: dict[str, Any]) -> FitState:
        arrays, meta = load_checkpoint(path)
        if meta["config"] != config:
            raise ValueError(f"{path} was written with another configuration: {meta['config']}")
        groups = {g: [arrays[f"{g}_{i}"] for i in range(meta["counts"][g])] for g in _GROUPS}
        return cls(meta["epoch"], meta["best_loss"], meta["stale"], meta["history"], **groups)


def _optimizer_state(model: keras.Model) -> list[np.ndarray]:
    return [v.numpy() for v in model.optimizer.variables]


def _set_state(model: keras.Model, weights: list[np.ndarray], optimizer: list[np.ndarray]) -> None:
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer, strict=True):
        variable.assign(value)


def fit(
    model: keras.Model,
    data: Dataset,
    config: MambaConfig,
    interrupt: InterruptFlag,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> dict[str, list[float]]:
    """Train a compiled model on data.x_train/y_train, validated on data.x_val/y_val.

    Returns the per-epoch history of loss and val_loss; the model ends with the best
    epoch's weights. With `checkpoint`, the state is saved there after every epoch.
    """
    if not model.built:
        model.build((None, *data.x_train.shape[1:]))
    model.optimizer.build(model.trainable_variables)  # its state is checkpointed too
    identity = json.loads(json.dumps(config.as_meta()))  # as a checkpoint gives it back
    state = FitState()
    if resume and checkpoint is not None and checkpoint.exists():
        state = FitState.load(checkpoint, identity)
        _set_state(model, state.weights, state.optimizer)
        log.info("resuming after epoch %d from %s", state.epoch, checkpoint)
    faults, fallbacks = FaultInjector.from_env(), Fallbacks(config.batch_size, MIN_BATCH_SIZE)
    n = len(data.x_train)

    def one_epoch(epoch: int, start: tuple[list[np.ndarray], list[np.ndarray]]) -> Any:
        def attempt(batch_size: int) -> Any:
            _set_state(model, *start)  # a retried epoch starts where the failed one did
            order = np.random.default_rng([config.seed, epoch]).permutation(n)
            return model.fit(
                data.x_train[order], data.y_train[order],
                validation_data=(data.x_val, data.y_val),
                batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                callbacks=[_BatchHooks(interrupt, faults, epoch, min(batch_size, n))],
            )  # fmt: skip

        return fallbacks.run(attempt)

    for epoch in range(state.epoch, config.epochs):
        if state.stale >= config.patience:  # checked first: a resumed run may have stopped early
            break
        start = (model.get_weights(), _optimizer_state(model))
        logs = one_epoch(epoch, start).history
        loss, val_loss = logs["loss"][-1], logs["val_loss"][-1]
        if faults.poison_loss(epoch):
            loss = float("nan")
        if not (np.isfinite(loss) and np.isfinite(val_loss)):
            if not state.best_weights:
                raise TrainingDiverged(f"loss became {loss} in epoch {epoch + 1}; no usable model")
            log.warning(
                "loss became %s in epoch %d: keeping the best epoch's weights", loss, epoch + 1
            )
            break
        state.history["loss"].append(float(loss))
        state.history["val_loss"].append(float(val_loss))
        state.epoch = epoch + 1
        if val_loss < state.best_loss:
            state.best_loss, state.stale, state.best_weights = val_loss, 0, model.get_weights()
        else:
            state.stale += 1
        state.weights, state.optimizer = model.get_weights(), _optimizer_state(model)
        if checkpoint is not None:
            state.save(checkpoint, identity)
    model.set_weights(state.best_weights)
    return state.history
