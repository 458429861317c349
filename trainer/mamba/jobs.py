"""Training symbols: one job per symbol, each in its own process, `workers` at a time (seed P0-3).

One process per symbol, started with `spawn` (TensorFlow is not fork-safe): a symbol that
fails, diverges, runs out of memory or is killed outright fails alone, and the others go
on. Nothing is shared but the models folder, and every write to it goes through the
artifact store's per-model lock and atomic renames, so runs over the same symbols, even
two `trainer` commands at once, leave only whole versions and a CURRENT that names one.
Ctrl-C reaches every worker (they share the terminal's process group); each stops at its
next step with a checkpoint, and the parent waits for them before it reports.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.mamba.data import PriceHistory
    from trainer.mamba.train import MambaConfig

# How a symbol ended; the CLI turns these into its exit status.
OK, FAILED, INTERRUPTED = "ok", "failed", "interrupted"


@dataclass(frozen=True)
class Outcome:
    symbol: str
    status: str  # OK, FAILED or INTERRUPTED
    message: str  # what was promoted, or why not


def _child(train: Callable[..., Outcome], args: tuple[Any, ...], sender: Any) -> None:
    sender.send(train(*args))
    sender.close()


def run_in_processes(
    train: Callable[..., Outcome], jobs: Iterable[tuple[Any, ...]], workers: int
) -> list[Outcome]:
    """train(*job) for every job, each in a fresh process, `workers` at a time, in job order.

    `train` must be a module-level function that returns an Outcome and catches its own
    training errors; a process that dies without answering (killed, out of memory, crashed)
    becomes a FAILED outcome for its symbol, job[0].
    """
    context = multiprocessing.get_context("spawn")
    waiting = list(enumerate(jobs))
    running: dict[int, tuple[int, str, Any, Any]] = {}  # sentinel -> index, symbol, process, pipe
    outcomes: dict[int, Outcome] = {}
    while waiting or running:
        while waiting and len(running) < workers:
            index, job = waiting.pop(0)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(train, job, sender), daemon=True)
            process.start()
            sender.close()  # the child holds the only writing end: EOF if it dies
            running[process.sentinel] = (index, str(job[0]), process, receiver)
        for sentinel in multiprocessing.connection.wait(list(running)):
            index, symbol, process, receiver = running.pop(sentinel)
            try:
                outcomes[index] = receiver.recv()
            except EOFError:
                outcomes[index] = Outcome(symbol, FAILED, f"worker died: {_death(process)}")
            process.join()
    return [outcomes[i] for i in sorted(outcomes)]


def _death(process: multiprocessing.process.BaseProcess) -> str:
    process.join()
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code} without a result"


def train_and_publish(
    symbol: str, history: PriceHistory, output: Path, config: MambaConfig, resume: bool
) -> Outcome:
    """Train, export, store and promote one symbol, in this process.

    Every error of the symbol's own becomes its Outcome, so the caller (a loop, or
    run_in_processes) goes on with the next.
    """
    # TensorFlow only here: the parent of the worker processes never needs it.
    from shared.artifact_store import CHECKPOINT_FILE, ArtifactStore
    from trainer.mamba.export import MambaExportError
    from trainer.mamba.publish import KIND, publish
    from trainer.mamba.train import member_checkpoints, train_symbol
    from trainer.safe_training import (
        OutOfMemory,
        TrainingDiverged,
        TrainingInterrupted,
        interrupt_guard,
    )

    store = ArtifactStore(output)
    checkpoint = store.model_dir(KIND, symbol) / CHECKPOINT_FILE
    with interrupt_guard() as interrupt:
        try:
            result = train_symbol(
                history.close, config, interrupt=interrupt, checkpoint=checkpoint, resume=resume
            )
            written = publish(store, symbol, result, config, len(history))
        except TrainingInterrupted as stop:
            return Outcome(
                symbol,
                INTERRUPTED,
                f"{stop}; checkpoints in {checkpoint.parent}: rerun with --resume",
            )
        except (
            ValueError,
            FloatingPointError,
            MambaExportError,
            TrainingDiverged,
            OutOfMemory,
        ) as error:
            return Outcome(symbol, FAILED, str(error))
    for path in member_checkpoints(checkpoint, config.members):
        path.unlink(missing_ok=True)
    qlike = ", ".join(f"{k} {v:.3f}" for k, v in result.validation.items() if k.startswith("qlike"))
    epochs = "+".join(str(n) for n in result.epochs_run)  # each member's
    return Outcome(
        symbol,
        OK,
        f"promoted mamba/{symbol}/{written.version} after {epochs} epochs "
        f"({result.seconds:.1f} s); validation QLIKE {qlike}",
    )
