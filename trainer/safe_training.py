"""Training that survives its faults (seed P0-6), in one place.

- NaN or inf loss: `TrainingDiverged`; the caller keeps the best weights so far.
- Ctrl-C / SIGTERM: `interrupt_guard` turns the first signal into `TrainingInterrupted`
  at the next training step; the last epoch's checkpoint is on disk, `--resume` goes on.
- Out of memory: `Fallbacks` retries with half the batch, down to a floor.
- GPU failure: `Fallbacks` retries on the CPU with a warning.

Faults can be injected for tests through TRAINER_INJECT_FAULT, read by `inject_fault`
inside the training step: `nan@E` (loss NaN from epoch E), `oom@E:ROWS` (a chunk of more
than ROWS rows raises ResourceExhaustedError from epoch E), `gpu@E` (the first step of
epoch E raises a CUDA InternalError).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf

from shared.atomic_files import replace_atomically

log = logging.getLogger(__name__)
T = TypeVar("T")
FAULT_ENV = "TRAINER_INJECT_FAULT"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; the last checkpoint is on disk."""


class OutOfMemory(RuntimeError):
    """Out of memory even at the smallest batch size allowed."""


@dataclass
class InterruptFlag:
    raised_by: int | None = None

    def check(self) -> None:
        if self.raised_by is not None:
            raise TrainingInterrupted(f"stopped by {signal.Signals(self.raised_by).name}")


@contextlib.contextmanager
def interrupt_guard() -> Iterator[InterruptFlag]:
    """Catch the first SIGINT/SIGTERM as a flag the training step checks; a second one kills."""
    flag = InterruptFlag()
    previous = {}

    def handler(signum: int, _frame: Any) -> None:
        if flag.raised_by is not None:
            raise KeyboardInterrupt
        flag.raised_by = signum
        log.warning("%s received: stopping after this step", signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@dataclass
class FaultInjector:
    """Faults asked for in TRAINER_INJECT_FAULT, triggered from inside the training step."""

    kind: str = ""
    epoch: int = 0
    rows: int = 0
    fired: set[int] = field(default_factory=set)

    @classmethod
    def from_env(cls) -> FaultInjector:
        spec = os.environ.get(FAULT_ENV, "")
        if not spec:
            return cls()
        kind, _, where = spec.partition("@")
        epoch, _, rows = where.partition(":")
        if kind not in {"nan", "oom", "gpu"} or not epoch.isdigit():
            raise ValueError(f"{FAULT_ENV}={spec!r}: expected nan@E, oom@E:ROWS or gpu@E")
        return cls(kind=kind, epoch=int(epoch), rows=int(rows or 0))

    def poison_loss(self, epoch: int) -> bool:
        return self.kind == "nan" and epoch >= self.epoch

    def before_step(self, epoch: int, rows: int) -> None:
        if self.kind == "oom" and epoch >= self.epoch and rows > self.rows:
            raise tf.errors.ResourceExhaustedError(None, None, f"injected: OOM for {rows} rows")
        if self.kind == "gpu" and epoch == self.epoch and epoch not in self.fired:
            self.fired.add(epoch)
            raise tf.errors.InternalError(
                None, None, "injected: CUDA error: an illegal memory access"
            )


@dataclass
class Fallbacks:
    """Runs training epochs, halving the batch on OOM and moving to the CPU on a GPU error.

    The smaller batch and the CPU placement stick for the epochs that follow.
    """

    batch_size: int
    floor: int
    on_cpu: bool = False

    def run(self, epoch: Callable[[int], T]) -> T:
        while True:
            try:
                if self.on_cpu:
                    with tf.device("/CPU:0"):
                        return epoch(self.batch_size)
                return epoch(self.batch_size)
            except tf.errors.ResourceExhaustedError as error:
                if self.batch_size // 2 < self.floor:
                    raise OutOfMemory(
                        f"out of memory at batch size {self.batch_size} (floor {self.floor}): "
                        f"{error.message}"
                    ) from error
                self.batch_size //= 2
                log.warning("out of memory; retrying the epoch with batch size %d", self.batch_size)
            except (tf.errors.InternalError, tf.errors.UnknownError) as error:
                if self.on_cpu or "CUDA" not in error.message:
                    raise
                self.on_cpu = True
                log.warning("GPU failed (%s); falling back to the CPU", error.message)


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Arrays and JSON-able metadata in one .npz, replaced atomically: a kill leaves the old one."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, meta=np.array(json.dumps(meta)))
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, buffer.getvalue())


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files if name != "meta"}
        return arrays, json.loads(str(data["meta"]))
