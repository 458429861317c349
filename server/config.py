"""The server's settings: command-line flags, each with an environment-variable equivalent.

A flag beats its variable, which beats the default: `--port 50051` or `PRICING_PORT=50051`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

MAX_AUTO_BATCH_THREADS = 8


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    models_dir: Path = Path("models")
    redis_url: str | None = None  # None: the in-process cache only
    workers: int = 1
    local_cache_size: int = 100_000
    local_cache_ttl: float = 60.0
    redis_ttl: float = 300.0
    redis_timeout: float = 0.025  # seconds; Redis must never hold a request up for long
    redis_cooldown: float = 5.0  # seconds the circuit breaker stays open after failures
    max_batch_rows: int = 512  # rows per onnxruntime call for coalesced PriceOption calls
    max_queue_rows: int = 8192  # rows waiting for the model; beyond it RESOURCE_EXHAUSTED
    max_batch_wait: float = 0.002  # seconds a run may wait for more calls, while that pays
    max_request_rows: int = 100_000  # largest PriceBatch
    batch_threads: int = 0  # threads a PriceBatch's rows are split across; 0: one per core
    max_concurrent_rpcs: int = (
        2048  # calls in flight, queued ones included; beyond: RESOURCE_EXHAUSTED
    )
    reload_interval: float = 1.0  # seconds between checks of CURRENT
    metrics_port: int = 9100  # 0: no metrics server; worker i serves on metrics_port + i
    drain: float = 5.0  # at most this long after SIGTERM, calls still arriving are answered
    grace: float = 5.0  # seconds in-flight calls get at shutdown
    log_level: str = "INFO"

    @property
    def batch_thread_count(self) -> int:
        """batch_threads, 0 resolved to the cores this process may use (MAX_AUTO_BATCH_THREADS
        at most)."""
        return self.batch_threads or min(MAX_AUTO_BATCH_THREADS, usable_cores())


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, bounded by a cgroup CPU quota (a
    container's CPU limit, which the affinity does not show), at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = _cpu_quota(cgroup)
    return cores if quota is None else max(1, min(cores, int(quota)))


def _cpu_quota(cgroup: Path) -> float | None:
    """The CPUs a cgroup's quota allows, or None without a (readable) quota."""
    try:
        if (cgroup / "cpu.max").exists():  # cgroup v2: "<quota> <period>", quota "max" if none
            quota, period = (cgroup / "cpu.max").read_text().split()
        else:  # cgroup v1: quota -1 if none
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text()
        return None if quota.strip() in ("max", "-1") else int(quota) / int(period)
    except (OSError, ValueError):
        return None


# flag, environment variable, parser, help
_OPTIONS: dict[str, tuple[str, str, Callable[[str], Any], str]] = {
    "host": ("--host", "PRICING_HOST", str, "address to listen on"),
    "port": ("--port", "PRICING_PORT", int, "gRPC port"),
    "models_dir": (
        "--models",
        "PRICING_MODELS_DIR",
        Path,
        "models folder (artifact store root): pinn/default/ and any mamba/<SYMBOL>/",
    ),
    "redis_url": (
        "--redis-url",
        "REDIS_URL",
        str,
        "Redis URL for the shared cache; unset: in-process cache only",
    ),
    "workers": (
        "--workers",
        "PRICING_WORKERS",
        int,
        "server processes sharing the port (SO_REUSEPORT)",
    ),
    "local_cache_size": (
        "--cache-size",
        "PRICING_CACHE_SIZE",
        int,
        "entries of the in-process cache",
    ),
    "local_cache_ttl": (
        "--cache-ttl",
        "PRICING_CACHE_TTL",
        float,
        "seconds an in-process entry lives",
    ),
    "redis_ttl": ("--redis-ttl", "PRICING_REDIS_TTL", float, "seconds a Redis entry lives"),
    "redis_timeout": (
        "--redis-timeout",
        "PRICING_REDIS_TIMEOUT",
        float,
        "seconds before a Redis call counts as failed",
    ),
    "redis_cooldown": (
        "--redis-cooldown",
        "PRICING_REDIS_COOLDOWN",
        float,
        "seconds Redis is skipped after failures",
    ),
    "max_batch_rows": (
        "--max-batch-rows",
        "PRICING_MAX_BATCH_ROWS",
        int,
        "rows per coalesced model call",
    ),
    "max_queue_rows": (
        "--max-queue-rows",
        "PRICING_MAX_QUEUE_ROWS",
        int,
        "rows allowed to wait for the model",
    ),
    "max_batch_wait": (
        "--max-batch-wait",
        "PRICING_MAX_BATCH_WAIT",
        float,
        "seconds a model run may wait for more calls to join it, only while such waits "
        "gather calls (under load); 0 = never wait, and each call runs alone",
    ),
    "max_request_rows": (
        "--max-request-rows",
        "PRICING_MAX_REQUEST_ROWS",
        int,
        "largest PriceBatch, in rows",
    ),
    "batch_threads": (
        "--batch-threads",
        "PRICING_BATCH_THREADS",
        int,
        "threads one PriceBatch's rows are split across, run in parallel; 0 = one per core "
        "this process may use (its CPU affinity, within a container's CPU limit), at most "
        f"{MAX_AUTO_BATCH_THREADS}",
    ),
    "max_concurrent_rpcs": (
        "--max-concurrent-rpcs",
        "PRICING_MAX_CONCURRENT_RPCS",
        int,
        "calls in flight at once; beyond: RESOURCE_EXHAUSTED",
    ),
    "reload_interval": (
        "--reload-interval",
        "PRICING_RELOAD_INTERVAL",
        float,
        "seconds between checks for a new model",
    ),
    "metrics_port": (
        "--metrics-port",
        "PRICING_METRICS_PORT",
        int,
        "Prometheus port (worker i: +i); 0 = off",
    ),
    "drain": (
        "--drain",
        "PRICING_DRAIN",
        float,
        "after SIGTERM, seconds at most to go on answering calls that still arrive, "
        "health NOT_SERVING, until none came for 0.1 s",
    ),
    "grace": ("--grace", "PRICING_GRACE", float, "seconds in-flight calls get at shutdown"),
    "log_level": ("--log-level", "PRICING_LOG_LEVEL", str.upper, "DEBUG, INFO, WARNING or ERROR"),
}

_POSITIVE = {
    "workers",
    "local_cache_size",
    "max_batch_rows",
    "max_queue_rows",
    "max_request_rows",
    "max_concurrent_rpcs",
}
_NON_NEGATIVE = {
    "port",
    "metrics_port",
    "local_cache_ttl",
    "redis_ttl",
    "redis_timeout",
    "redis_cooldown",
    "drain",
    "grace",
    "max_batch_wait",
    "batch_threads",
}


def parse_config(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None
) -> ServerConfig:
    """Flags, then environment variables, then defaults; a bad value is a usage error naming the flag."""
    environ = os.environ if environ is None else environ
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="pricing-server", description="gRPC option pricing over ONNX models."
    )
    for field in fields(ServerConfig):
        flag, env, kind, text = _OPTIONS[field.name]
        parser.add_argument(
            flag,
            dest=field.name,
            type=kind,
            help=f"{text} (env {env}; default {getattr(defaults, field.name)})",
        )
    args = parser.parse_args(argv)
    values = {}
    for field in fields(ServerConfig):
        flag, env, kind, _ = _OPTIONS[field.name]
        value = getattr(args, field.name)
        if value is None and env in environ:
            try:
                value = kind(environ[env])
            except ValueError:
                parser.error(f"{env}={environ[env]!r} (or {flag}) is not a valid {kind.__name__}")
        if value is None:
            value = getattr(defaults, field.name)
        if field.name in _POSITIVE and value <= 0:
            parser.error(f"{flag} must be > 0, got {value}")
        if field.name in _NON_NEGATIVE and value < 0:
            parser.error(f"{flag} must be >= 0, got {value}")
        values[field.name] = value
    if values["log_level"] not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        parser.error(
            f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {values['log_level']}"
        )
    return ServerConfig(**values)
