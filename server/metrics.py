"""The server's Prometheus metrics (text exposition on `--metrics-port`, worker i on +i)."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter(
    "pricing_requests_total", "RPCs answered, by method and status code", ["method", "code"]
)
LATENCY = Histogram(
    "pricing_request_seconds",
    "Time spent in the handler, by method",
    ["method"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_ROWS = Histogram(
    "pricing_batch_rows",
    "Rows per onnxruntime call of the micro-batcher",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
MODEL_RUN = Histogram(
    "pricing_model_run_seconds",
    "onnxruntime time of the micro-batcher's runs, pre- and post-processing included",
    buckets=(2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 0.001, 0.002, 0.005, 0.01, 0.05),
)
QUEUE_ROWS = Gauge("pricing_queue_rows", "Rows waiting for the model")
CACHE_LOOKUPS = Counter(
    "pricing_cache_lookups_total", "Quote cache lookups, by tier and result", ["tier", "result"]
)
REDIS_EVENTS = Counter(
    "pricing_redis_events_total", "Redis errors, skips (breaker open), malformed values", ["event"]
)
MODEL_INFO = Gauge(
    "pricing_model_info",
    "1 for each model version in service (the PINN, a forecaster per symbol)",
    ["kind", "name", "version"],
)
# The labelled series every request updates, each looked up once: labels() costs ~0.7 us a
# call. Their label values come from small fixed sets (methods, status codes, tiers).
request_count = functools.cache(REQUESTS.labels)
request_latency = functools.cache(LATENCY.labels)
cache_lookup = functools.cache(CACHE_LOOKUPS.labels)
# (kind, name) -> the version MODEL_INFO shows, so a swap replaces just that model's line.
_SHOWN: dict[tuple[str, str], str] = {}


def batch_ran(rows: int, seconds: float) -> None:
    BATCH_ROWS.observe(rows)
    MODEL_RUN.observe(seconds)


def serve_metrics(port: int) -> None:
    """Start the exposition server in a daemon thread (no-op when port is 0)."""
    if port:
        start_http_server(port, addr="0.0.0.0")


def model_swapped(kind: str, name: str, version: str) -> None:
    if (before := _SHOWN.get((kind, name))) is not None:
        MODEL_INFO.remove(kind, name, before)
    _SHOWN[kind, name] = version
    MODEL_INFO.labels(kind, name, version).set(1)
