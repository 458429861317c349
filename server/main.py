"""`pricing-server`: start N worker processes, each a grpc.aio server on the same port.

    pricing-server --models models --port 50051 [--redis-url redis://...] [--workers 2]

Each worker loads the models once (its own onnxruntime sessions: the PINN, and a forecaster
per symbol under <models>/mamba/ if there are any) and has its own in-process cache; Redis is
shared. SIGTERM or SIGINT: health goes NOT_SERVING, new calls are refused, in-flight calls
get `--grace` seconds, Redis is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import signal
import socket
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server import metrics
from server.batching import MicroBatcher
from server.cache import QuoteCache, RedisTier
from server.config import ServerConfig, parse_config
from server.forecaster import KIND as FORECASTER_KIND
from server.forecaster import load_forecaster
from server.hot_reload import ModelFamily, ModelHolder, watch
from server.model import KIND, NAME, LoadedModel, load_pinn
from server.service import PricingService
from shared.api import pricing_pb2, pricing_pb2_grpc
from shared.artifact_store import ArtifactStore

# A drain ends once no call has begun for this long: gRPC's queue is empty by then.
DRAIN_QUIET = 0.1
log = logging.getLogger("server")
SERVICE = pricing_pb2.DESCRIPTOR.services_by_name["PricingService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 100,000-row PriceBatch is about 5.6 MB


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors parse without rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


async def serve(config: ServerConfig, worker: int = 0) -> None:
    """Run one worker until SIGTERM or SIGINT."""
    health_servicer = health.aio.HealthServicer()
    names = ("", SERVICE)

    async def swapped(model: LoadedModel) -> None:
        metrics.model_swapped(KIND, NAME, model.version)
        for name in names:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    loop = asyncio.get_running_loop()
    background: set[asyncio.Task[None]] = set()  # referenced until done, or they may vanish

    def on_swap(model: LoadedModel) -> None:
        task = loop.create_task(swapped(model))
        background.add(task)
        task.add_done_callback(background.discard)

    store = ArtifactStore(config.models_dir)
    models = ModelHolder(store, KIND, NAME, load_pinn, on_swap)
    # Optional: health follows the PINN alone, and no forecaster at all is fine.
    forecasters = ModelFamily(
        store,
        FORECASTER_KIND,
        load_forecaster,
        lambda symbol, model: metrics.model_swapped(FORECASTER_KIND, symbol, model.version),
    )
    for name in names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await models.reload_if_promoted()
    await forecasters.reload_if_promoted()
    batch_threads = config.batch_thread_count
    executor = ThreadPoolExecutor(max_workers=batch_threads, thread_name_prefix="onnxruntime")
    batcher = MicroBatcher(
        lambda: models.current,
        config.max_batch_rows,
        config.max_queue_rows,
        metrics.batch_ran,
        config.max_batch_wait,
    )
    metrics.QUEUE_ROWS.set_function(lambda: batcher.queued_rows)
    shared = None
    if config.redis_url:
        shared = RedisTier(
            config.redis_url, config.redis_ttl, config.redis_timeout, config.redis_cooldown,
            lambda event: metrics.REDIS_EVENTS.labels(event).inc(),
        )  # fmt: skip
    cache = QuoteCache(
        config.local_cache_size, config.local_cache_ttl, shared,
        lambda tier, result: metrics.cache_lookup(tier, result).inc(),
    )  # fmt: skip

    server = grpc.aio.server(
        # The bound on everything waiting, in gRPC's queue as well as ours.
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        options=[
            # Several workers share the port on purpose; a lone server must never share it
            # with a stale one by accident.
            ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    service = PricingService(
        models, forecasters, batcher, cache, executor, batch_threads, config.max_request_rows
    )
    pricing_pb2_grpc.add_PricingServiceServicer_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        metrics.serve_metrics(config.metrics_port + worker if config.metrics_port else 0)
        port = server.add_insecure_port(f"{config.host}:{config.port}")
    except (OSError, RuntimeError) as error:
        raise SystemExit(
            f"pricing-server: cannot listen (--port {config.port}, --metrics-port {config.metrics_port}): {error}"
        ) from error
    await server.start()
    watcher = loop.create_task(watch(config.reload_interval, models, forecasters))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = models.current.version if models.loaded else "nothing yet"
    symbols = ", ".join(f"{s} {m.version}" for s, m in forecasters.serving().items()) or "none"
    log.info(
        "worker %d listening on %s:%d, serving %s/%s/%s, forecasters: %s",
        worker,
        config.host,
        port,
        KIND,
        NAME,
        serving,
        symbols,
    )
    # One write for the whole line: the workers share stdout, and print() writes the text and
    # its newline separately, so two workers starting together could merge their lines.
    sys.stdout.write(f"pricing-server worker {worker} listening on {config.host}:{port}\n")
    sys.stdout.flush()

    await stop.wait()
    # Orchestrators may repeat SIGTERM; shutdown is already under way and bounded by --grace.
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log.info(
        "worker %d stopping: answering calls that still arrive for at most %.1f s",
        worker,
        config.drain,
    )
    for name in names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    # gRPC's stop() cancels calls that have arrived but not reached a handler yet (197 of 200
    # queued PriceOption calls here): keep answering until they stop coming, then stop.
    await service.activity.quiet(DRAIN_QUIET, config.drain)
    log.info("worker %d refusing new calls, %.1f s for in-flight ones", worker, config.grace)
    await server.stop(config.grace)
    watcher.cancel()
    await cache.close()
    executor.shutdown(wait=True)
    log.info("worker %d stopped", worker)


def _worker(config: ServerConfig, worker: int) -> None:
    configure_logging(config.log_level)
    asyncio.run(serve(config, worker))


def run_workers(config: ServerConfig) -> int:
    """Start `config.workers` processes on one port and wait; forward SIGTERM/SIGINT to them."""
    if config.port == 0:  # every worker must bind the same port: choose it here
        with socket.socket() as probe:
            probe.bind((config.host, 0))
            config = replace(config, port=probe.getsockname()[1])
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(config, i), name=f"pricing-worker-{i}")
        for i in range(config.workers)
    ]
    for process in workers:
        process.start()

    def forward(signum: int, _frame: Any) -> None:
        for process in workers:
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker shuts down gracefully

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in workers:
        process.join()
    return max(abs(process.exitcode or 0) for process in workers)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    configure_logging(config.log_level)
    if config.workers == 1:
        asyncio.run(serve(config))
        return 0
    return run_workers(config)


if __name__ == "__main__":
    sys.exit(main())
