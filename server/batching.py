"""Micro-batching: PriceOption calls that arrive while the model is busy share its next run.

A call brings one contract and gets its quote (call and put: two rows of the model). Runs
happen on the event loop itself: for these small batches (~70 us for a few rows) that is
cheaper than the ~75 us hop to an executor thread and back. An idle batcher runs a call at
once, in its own handler, through the model's single-contract path. While a run is pending,
new calls queue, and the next run takes everything queued (up to `max_batch_rows`) in one
onnxruntime call.

Calls rarely meet by themselves, though: grpc.aio hands the loop one new call per turn, so
at concurrency 32 97% of runs held a single call (measured), and each call paid a whole
model run. So under load a run first waits up to `max_wait` for more calls, but only while
waiting pays: after a wait that gathered no one, calls run at once again for the next
`probe_every` runs, then one run tries a wait again (the first run does too). A lone caller
therefore meets a wait in at most one run in `probe_every`, and a full batch ends a wait at
once.

The queue is bounded in rows: past it, `Overloaded` at once, which the service turns into
RESOURCE_EXHAUSTED. A request whose deadline passed while it waited is dropped before
inference.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from server.model import LoadedModel
from server.quotes import OPTION_TYPES, Contract, Quote

ROWS_PER_CONTRACT = len(OPTION_TYPES)


class Overloaded(RuntimeError):
    """The queue is full."""


class DeadlineExpired(RuntimeError):
    """The caller's deadline passed before its rows reached the model."""


@dataclass
class _Pending:
    contract: Contract
    deadline: float | None  # time.monotonic() value, or None for no deadline
    future: asyncio.Future[tuple[LoadedModel, Quote]]


class MicroBatcher:
    def __init__(
        self,
        current_model: Callable[[], LoadedModel],
        max_batch_rows: int,
        max_queue_rows: int,
        on_batch: Callable[[int, float], None] = lambda rows, seconds: None,
        max_wait: float = 0.0,
        probe_every: int = 256,
    ) -> None:
        self._current_model = current_model
        self._max_batch_rows = max_batch_rows
        self._max_queue_rows = max_queue_rows
        self._on_batch = on_batch
        self._max_wait = max_wait
        self._probe_every = probe_every
        self._queue: deque[_Pending] = deque()
        self.queued_rows = 0
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._waiting_pays = False
        self._runs_since_wait = probe_every - 1  # so the first run probes
        self._batch_full: asyncio.Future[None] | None = None  # set while a wait is on

    async def run(
        self, contract: Contract, deadline: float | None = None
    ) -> tuple[LoadedModel, Quote]:
        """The model that ran and its quote of this contract."""
        if self.queued_rows + ROWS_PER_CONTRACT > self._max_queue_rows:
            raise Overloaded(
                f"{self.queued_rows} rows already wait for the model (limit {self._max_queue_rows})"
            )
        # A run that is to wait goes through _drain, which asks _should_wait again and gets
        # the same answer: a probe's count stays due, and waiting_pays is unchanged.
        if not self._draining and not self._should_wait():
            return self._run_alone(contract, deadline)
        loop = asyncio.get_running_loop()
        pending = _Pending(contract, deadline, loop.create_future())
        self._queue.append(pending)
        self.queued_rows += ROWS_PER_CONTRACT
        full = self.queued_rows >= self._max_batch_rows
        if full and self._batch_full is not None and not self._batch_full.done():
            self._batch_full.set_result(None)
        if not self._draining:
            self._draining = True
            self._drain_task = loop.create_task(self._drain())
        return await pending.future

    def _run_alone(self, contract: Contract, deadline: float | None) -> tuple[LoadedModel, Quote]:
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExpired("deadline passed before inference")
        model = self._current_model()
        [quote] = self._timed_run(model, [contract])
        return model, quote

    def _timed_run(self, model: LoadedModel, contracts: list[Contract]) -> list[Quote]:
        start = time.perf_counter()
        quotes = model.quotes(contracts)
        self._on_batch(ROWS_PER_CONTRACT * len(contracts), time.perf_counter() - start)
        return quotes

    def _should_wait(self) -> bool:
        """Whether the coming run waits for more calls first (counts it towards a probe)."""
        if self._max_wait <= 0 or self.queued_rows >= self._max_batch_rows:
            return False
        self._runs_since_wait += 1
        return self._waiting_pays or self._runs_since_wait >= self._probe_every

    async def _gather_more(self) -> None:
        """Wait up to max_wait for more calls to queue (less if the batch fills)."""
        self._runs_since_wait = 0
        queued = len(self._queue)
        self._batch_full = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait([self._batch_full], timeout=self._max_wait)
        finally:
            self._batch_full = None
        self._waiting_pays = len(self._queue) > queued

    def _next_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._queue and (
            not batch or ROWS_PER_CONTRACT * (len(batch) + 1) <= self._max_batch_rows
        ):
            pending = self._queue.popleft()
            self.queued_rows -= ROWS_PER_CONTRACT
            if not pending.future.done():  # done: the caller went away
                batch.append(pending)
        return batch

    def _infer(self, model: LoadedModel, batch: list[_Pending]) -> dict[int, Quote]:
        """Drop what expired while queued, then one model run: quotes by place in the batch."""
        now = time.monotonic()
        kept = [i for i, p in enumerate(batch) if p.deadline is None or p.deadline > now]
        if not kept:
            return {}
        quotes = self._timed_run(model, [batch[i].contract for i in kept])
        return dict(zip(kept, quotes, strict=True))

    async def _drain(self) -> None:
        try:
            while self._queue:
                # Let every handler that is ready add its rows first, so they share this run.
                await asyncio.sleep(0)
                if self._should_wait():
                    await self._gather_more()
                batch = self._next_batch()
                if not batch:
                    continue
                model = self._current_model()
                try:
                    quotes = self._infer(model, batch)
                except Exception as error:  # a failing run fails its callers, not the batcher
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(error)
                    continue
                for i, pending in enumerate(batch):
                    if pending.future.done():  # the caller left (its contract may have run)
                        continue
                    if i in quotes:
                        pending.future.set_result((model, quotes[i]))
                    else:
                        expired = DeadlineExpired("deadline passed while waiting for the model")
                        pending.future.set_exception(expired)
        finally:
            self._draining = False
