"""A PricingService that computes nothing: the baseline every server benchmark is compared with.

    .venv/bin/python bench/noop_server.py [--port 50099]

Its replies are constants, so what a load test measures against it is the cost of gRPC itself
(framing, protobuf parsing and serialisation, the event loop) and of the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal

import grpc

from shared.api import pricing_pb2, pricing_pb2_grpc

MODEL_VERSION = "noop"
BATCH_COLUMNS = ("price", "delta", "gamma", "theta", "vega", "rho")


@functools.lru_cache(maxsize=16)
def _batch_response(rows: int) -> pricing_pb2.PriceBatchResponse:
    """A reply of `rows` rows, built once per size: gRPC only serialises it, never changes it,
    so sharing it leaves the reply's serialisation as the only per-call cost, as intended."""
    column = [1.0] * rows
    response = pricing_pb2.PriceBatchResponse(model_version=MODEL_VERSION)
    for name in BATCH_COLUMNS:
        getattr(response, name).extend(column)
    return response


class NoopPricingService(pricing_pb2_grpc.PricingServiceServicer):
    """Replies with fixed values of the right shape, whatever the request says.

    The handlers bear the RPCs' names, as gRPC requires: hence the N802 exemptions."""

    _option = pricing_pb2.PriceOptionResponse(
        price=10.0,
        greeks=pricing_pb2.Greeks(delta=0.5, gamma=0.02, theta=-5.0, vega=40.0, rho=45.0),
        model_version=MODEL_VERSION,
        cached=False,
    )

    async def PriceOption(  # noqa: N802
        self, request: pricing_pb2.PriceOptionRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.PriceOptionResponse:
        return self._option

    async def PriceBatch(  # noqa: N802
        self, request: pricing_pb2.PriceBatchRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.PriceBatchResponse:
        rows = max(
            len(request.type),
            len(request.spot),
            len(request.strike),
            len(request.tau),
            len(request.rate),
            len(request.volatility),
            len(request.dividend_yield),
        )
        return _batch_response(rows)

    # The demo forecasters' shape: horizons of 1, 5, 10 and 30 trading days.
    _forecast = pricing_pb2.ForecastResponse(
        horizons=[1, 5, 10, 30],
        log_return=[0.001, 0.005, 0.01, 0.03],
        volatility=[0.3, 0.3, 0.3, 0.3],
        model_version=MODEL_VERSION,
    )

    async def Forecast(  # noqa: N802
        self, request: pricing_pb2.ForecastRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.ForecastResponse:
        return self._forecast


async def start_noop_server(port: int = 0, host: str = "127.0.0.1") -> tuple[grpc.aio.Server, int]:
    """Start the no-op server on host:port (0 picks a free port); returns it and its port."""
    server = grpc.aio.server(
        options=[
            # Without this, a stale server still bound to the port would share its traffic.
            ("grpc.so_reuseport", 0),
            # Large PriceBatch requests are part of what it is there to measure.
            ("grpc.max_receive_message_length", -1),
        ]
    )
    pricing_pb2_grpc.add_PricingServiceServicer_to_server(NoopPricingService(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound


async def _serve(port: int, host: str) -> None:
    server, bound = await start_noop_server(port, host)
    print(f"no-op PricingService listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50099, help="port to listen on (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.host))


if __name__ == "__main__":
    main()
