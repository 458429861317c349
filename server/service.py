"""The gRPC servicer: thin methods over requests.py, the cache, the batcher and the models.

Errors are raised where they are found, as plain exceptions; `rpc` maps them to status
codes (and counts them), so a bad input can never crash the server or leak a NaN.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from server import metrics
from server.batching import DeadlineExpired, MicroBatcher, Overloaded
from server.cache import QuoteCache, quote_key
from server.forecaster import LoadedForecaster, UnforecastableCloses, UnknownSymbol, find
from server.hot_reload import ModelFamily, ModelHolder, NoModel
from server.model import ROW_ALIGNMENT, LoadedModel
from server.quotes import quote_half
from server.requests import BadRequest, batch_rows, forecast_closes, forecast_symbol, option_row
from shared.api import pricing_pb2, pricing_pb2_grpc
from shared.validation import InvalidInputError

log = logging.getLogger(__name__)
MIN_CHUNK_ROWS = 1024
Reply = TypeVar("Reply")


STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    UnforecastableCloses: grpc.StatusCode.INVALID_ARGUMENT,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExpired: grpc.StatusCode.DEADLINE_EXCEEDED,
    NoModel: grpc.StatusCode.UNAVAILABLE,
    UnknownSymbol: grpc.StatusCode.NOT_FOUND,
}


def rpc(
    method: str,
) -> Callable[[Callable[..., Awaitable[Reply]]], Callable[..., Awaitable[Reply]]]:
    """Count and time a handler, and turn its exceptions into gRPC status codes."""

    def decorate(handler: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
        @functools.wraps(handler)
        async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Reply:
            start = time.perf_counter()
            code, message = grpc.StatusCode.OK, ""
            self.activity.started()
            try:
                return await handler(self, request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except tuple(STATUS_OF) as error:
                code = next(status for kind, status in STATUS_OF.items() if isinstance(error, kind))
                message = str(error)
            except Exception as error:
                log.exception("%s failed", method)
                code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"
            finally:
                self.activity.ended()
                metrics.request_count(method, code.name).inc()
                metrics.request_latency(method).observe(time.perf_counter() - start)
            await context.abort(code, message)  # raises: the RPC ends with that status

        return call

    return decorate


@dataclass
class Activity:
    """Calls in the handlers now, and when the last one began: what a drain waits on."""

    in_flight: int = 0
    last_start: float = 0.0  # time.monotonic()

    def started(self) -> None:
        self.in_flight += 1
        self.last_start = time.monotonic()

    def ended(self) -> None:
        self.in_flight -= 1

    async def quiet(self, for_seconds: float, at_most: float) -> None:
        """Return once no call ran or began for `for_seconds` from now on, or after `at_most`."""
        now = time.monotonic()
        deadline, self.last_start = now + at_most, max(self.last_start, now)
        while time.monotonic() < deadline and (
            self.in_flight or time.monotonic() - self.last_start < for_seconds
        ):
            await asyncio.sleep(for_seconds / 4)


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


async def run_split(
    model: LoadedModel, rows: np.ndarray, executor: Executor, parts: int
) -> np.ndarray:
    """`model.run(rows)` in up to `parts` chunks at once on the executor's threads.

    onnxruntime releases the GIL while it runs, and a row's answer is the same bits in any
    chunk (`LoadedModel.run` pads each to whole groups of rows), so a large PriceBatch runs
    in parallel: 10,000 rows took 3.3 ms instead of 6.4 ms on 2 cores (measured). Chunks
    of fewer than MIN_CHUNK_ROWS rows would gain less than the hand-offs cost.
    """
    size = max(MIN_CHUNK_ROWS, -(-len(rows) // parts))
    size += -size % ROW_ALIGNMENT
    loop = asyncio.get_running_loop()
    outputs = await asyncio.gather(*(
        loop.run_in_executor(executor, model.run, rows[start : start + size])
        for start in range(0, len(rows), size)
    ))  # fmt: skip
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=1)


class PricingService(pricing_pb2_grpc.PricingServiceServicer):
    def __init__(
        self,
        models: ModelHolder[LoadedModel],
        forecasters: ModelFamily[LoadedForecaster],
        batcher: MicroBatcher,
        cache: QuoteCache,
        executor: Executor,
        batch_threads: int,
        max_request_rows: int,
    ) -> None:
        self.models = models
        self.forecasters = forecasters
        self.activity = Activity()
        self.batcher = batcher
        self.cache = cache
        self.executor = executor
        self.batch_threads = batch_threads
        self.max_request_rows = max_request_rows

    @rpc("PriceOption")
    async def PriceOption(  # noqa: N802 (gRPC's method name)
        self, request: pricing_pb2.PriceOptionRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.PriceOptionResponse:
        model = self.models.current
        row = option_row(request, model.domain)
        is_put, contract = row[0], row[1:]
        quote, tier = await self.cache.get(quote_key(model.cache_tag, contract))
        version = model.version
        if quote is None:
            # One inference prices the call and the put of this contract; both are cached.
            model, quote = await self.batcher.run(contract, _deadline(context))
            version = model.version
            self.cache.put(quote_key(model.cache_tag, contract), quote)
        price, delta, gamma, theta, vega, rho = quote_half(quote, is_put)
        return pricing_pb2.PriceOptionResponse(
            price=price,
            greeks=pricing_pb2.Greeks(delta=delta, gamma=gamma, theta=theta, vega=vega, rho=rho),
            model_version=version,
            cached=tier is not None,
        )

    @rpc("PriceBatch")
    async def PriceBatch(  # noqa: N802
        self, request: pricing_pb2.PriceBatchRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.PriceBatchResponse:
        # Priced straight, not cached: onnxruntime prices a row in ~0.3 us, less than a
        # cache lookup per row would cost.
        model = self.models.current
        rows = batch_rows(request, model.domain, self.max_request_rows)
        deadline = _deadline(context)
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExpired("deadline passed before inference")
        outputs = await run_split(model, rows, self.executor, self.batch_threads)
        price, delta, gamma, theta, vega, rho = (column.tolist() for column in outputs)
        return pricing_pb2.PriceBatchResponse(
            price=price,
            delta=delta,
            gamma=gamma,
            theta=theta,
            vega=vega,
            rho=rho,
            model_version=model.version,
        )

    @rpc("Forecast")
    async def Forecast(  # noqa: N802
        self, request: pricing_pb2.ForecastRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.ForecastResponse:
        forecaster = find(self.forecasters, forecast_symbol(request))
        closes = forecast_closes(request, forecaster.closes_needed)
        # Run here, not in the executor: features and a one-row run take ~0.1 ms, less than
        # the hop to a thread and back (as for the batcher's runs).
        log_return, volatility = forecaster.forecast(closes)
        return pricing_pb2.ForecastResponse(
            horizons=forecaster.horizons,
            log_return=log_return.tolist(),
            volatility=volatility.tolist(),
            model_version=forecaster.version,
        )
