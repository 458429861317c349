"""pricing-server against a no-op gRPC server with the same messages, side by side in one run.

    .venv/bin/python bench/server_latency.py [--seconds 5] [--pin]

Starts bench/noop_server.py and pricing-server (the committed models, in-process cache) on
free loopback ports, drives both with pricing-loadtest's `run_load`, and prints one table per
goal of the server issue with the ratio to the no-op server. Forecast (AAPL, 130 closes) is
timed against uncached PriceOption by one client alternating the two calls. Client and
servers share this machine's cores (with --pin: the servers get the first half, the load
generator the rest), so absolute throughput is the machine's; the ratios are the point.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.loadtest import LoadConfig, run_load
from server.loadtest_requests import OPTION_WIRE, encode_options, sample_rows
from server.model import KIND, NAME, load_pinn
from server.requests import batch_rows
from shared.api import pricing_pb2 as pb
from shared.api.pricing_pb2_grpc import PricingServiceStub
from shared.artifact_store import ArtifactStore
from timing import best_seconds, machine

REPO = Path(__file__).resolve().parents[1]
SEED_LATENCY_MS = 1600.0  # the status report's measured time per prediction
# What the committed AAPL forecaster needs (meta.json's features.closes_needed).
FORECAST_CLOSES = 130
# Distinct PriceOption requests of the Forecast comparison: more than it sends, so none is cached.
DISTINCT_OPTIONS = 100_000
PAIRED = {
    "PriceOption": "PriceOption uncached p50 ms",
    "Forecast": f"Forecast AAPL ({FORECAST_CLOSES} closes) p50 ms",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(port: int, health: bool, timeout: float = 30.0) -> float:
    """Seconds until the server answers (health SERVING, or any PriceOption reply)."""
    start = time.perf_counter()
    request = pb.PriceOptionRequest(
        type=pb.CALL, spot=100, strike=100, tau=1, rate=0.01, volatility=0.2
    )
    serving = health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        while time.perf_counter() - start < timeout:
            try:
                if health:
                    check = health_pb2_grpc.HealthStub(channel).Check
                    if check(health_pb2.HealthCheckRequest(), timeout=0.5).status == serving:
                        return time.perf_counter() - start
                else:
                    PricingServiceStub(channel).PriceOption(request, timeout=0.5)
                    return time.perf_counter() - start
            except grpc.RpcError:
                time.sleep(0.01)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


@contextlib.contextmanager
def running(
    command: list[str], port: int, health: bool, cores: set[int] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """The server of `command`, answering; on `cores` only (its worker processes too) if given."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=None if cores is None else lambda: os.sched_setaffinity(0, cores),
    )
    try:
        yield process, wait_until_answering(port, health)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def noop(port: int) -> list[str]:
    return [sys.executable, str(REPO / "bench" / "noop_server.py"), "--port", str(port)]


def pricing(port: int, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "server.main", "--host", "127.0.0.1", "--port", str(port), "--models",
            str(REPO / "models"), "--metrics-port", "0", "--workers", str(workers), "--log-level", "WARNING"]  # fmt: skip


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_pids(process: subprocess.Popen[bytes], workers: int) -> list[int]:
    if workers == 1:
        return [process.pid]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    # multiprocessing's resource tracker is a child too; the workers run server code.
    return [
        int(pid)
        for pid in children
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def load(port: int, seconds: float, **settings: object) -> dict[str, object]:
    report = run_load(LoadConfig(target=f"127.0.0.1:{port}", duration=seconds, **settings))
    return {
        "ok": report.ok,
        "errors": report.errors,
        "rps": report.throughput_rps,
        **report.latency_ms,
    }


def forecast_and_option_p50(port: int, seconds: float) -> dict[str, float]:
    """p50 ms of Forecast and of uncached PriceOption at concurrency 1, from one client that
    alternates the two calls, so both meet the same (noisy) machine."""
    moves = np.random.default_rng(0).normal(0.0, 0.015, FORECAST_CLOSES)
    closes = (100.0 * np.exp(np.cumsum(moves))).tolist()
    forecast = pb.ForecastRequest(symbol="AAPL", closes=closes).SerializeToString()
    # Seed 1: none of the options the load runs (seed 0) may have left in the cache.
    options = encode_options(sample_rows(np.random.default_rng(1), DISTINCT_OPTIONS))
    size = OPTION_WIRE.itemsize
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    # No serialisers: requests go out as the bytes built above and replies stay unparsed.
    call = {name: channel.unary_unary(f"/pricing.v1.PricingService/{name}") for name in PAIRED}
    call["Forecast"](forecast, timeout=5)  # connect and warm up outside the clock
    elapsed: dict[str, list[int]] = {name: [] for name in PAIRED}
    end = time.perf_counter() + seconds
    for k in range(DISTINCT_OPTIONS):
        if time.perf_counter() >= end:
            break
        option = options[k * size : (k + 1) * size]
        for name, request in zip(PAIRED, (option, forecast), strict=True):
            start = time.perf_counter_ns()
            call[name](request, timeout=5)
            elapsed[name].append(time.perf_counter_ns() - start)
    channel.close()
    return {name: float(np.median(ns)) / 1e6 for name, ns in elapsed.items()}


def batch_breakdown(rows: int = 10_000) -> dict[str, float]:
    """Server-side milliseconds of a PriceBatch of `rows` options, step by step, in process."""
    model = load_pinn(ArtifactStore(REPO / "models").load(KIND, NAME))
    strikes = np.linspace(60, 180, rows)
    request = pb.PriceBatchRequest(type=[1, 2] * (rows // 2), spot=[100.0], strike=strikes.tolist(),
                                   tau=np.linspace(0.1, 2.5, rows).tolist(), rate=[0.02], volatility=[0.3])  # fmt: skip
    wire = request.SerializeToString()
    parsed = pb.PriceBatchRequest.FromString(wire)
    x = batch_rows(parsed, model.domain, 100_000)
    outputs = model.run(x)

    def reply() -> bytes:
        columns = dict(
            zip(
                ("price", "delta", "gamma", "theta", "vega", "rho"),
                (c.tolist() for c in outputs),
                strict=True,
            )
        )
        return pb.PriceBatchResponse(**columns, model_version=model.version).SerializeToString()

    return {
        "parse": best_seconds(lambda: pb.PriceBatchRequest.FromString(wire)) * 1e3,
        "validate + columns to rows": best_seconds(
            lambda: batch_rows(parsed, model.domain, 100_000)
        )
        * 1e3,
        "inference (onnxruntime)": best_seconds(lambda: model.run(x)) * 1e3,
        "reply (build + serialise)": best_seconds(reply) * 1e3,
    }


def row(label: str, base: dict[str, object], ours: dict[str, object], key: str, goal: str) -> str:
    ratio = float(ours[key]) / float(base[key])
    return f"| {label} | {float(base[key]):,.3f} | {float(ours[key]):,.3f} | {ratio:.2f} | {goal} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on the first half of the cores, the load generator on the others, so "
        "the client no longer competes with the server for a core and its caches",
    )
    args = parser.parse_args()
    seconds, server_cores = args.seconds, None
    placement = "client and servers share all cores"
    if args.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            parser.error("--pin needs at least 2 cores")
        server_cores, client_cores = set(cores[: len(cores) // 2]), set(cores[len(cores) // 2 :])
        os.sched_setaffinity(0, client_cores)  # the load generator's processes inherit it
        placement = f"servers on cores {sorted(server_cores)}, client on {sorted(client_cores)}"
    print(f"machine: {machine()}; every load run {seconds:g} s; {placement}\n")
    single = {"concurrency": 1, "processes": 1, "channels": 1}
    wide = {"concurrency": 16, "processes": 2, "channels": 4}  # 32 in flight, two client processes
    batch = {
        "method": "PriceBatch",
        "batch_size": 10_000,
        "concurrency": 1,
        "processes": 1,
        "channels": 1,
    }
    results: dict[str, dict[str, dict[str, object]]] = {}
    paired: dict[str, dict[str, float]] = {}
    startup: dict[int, tuple[float, list[float]]] = {}

    noop_port = free_port()
    with running(noop(noop_port), noop_port, False, server_cores):
        results["noop"] = {
            "c1": load(noop_port, seconds, **single),
            "c32": load(noop_port, seconds, **wide),
            "batch": load(noop_port, seconds, **batch),
            "c32x8": load(noop_port, seconds, concurrency=32, processes=2, channels=8),
        }
        paired["noop"] = forecast_and_option_p50(noop_port, seconds)
    for workers in (1, 2):
        port = free_port()
        with running(pricing(port, workers), port, True, server_cores) as (process, to_serving):
            if workers == 1:
                results["pricing"] = {
                    "c1": load(port, seconds, **single),
                    "c1_hit": load(port, seconds, distinct=1, **single),
                    "c32": load(port, seconds, **wide),
                    "batch": load(port, seconds, **batch),
                }
                paired["pricing"] = forecast_and_option_p50(port, seconds)
            results[f"workers{workers}"] = {
                "c32x8": load(port, seconds, concurrency=32, processes=2, channels=8)
            }
            startup[workers] = (to_serving, [rss_mb(pid) for pid in worker_pids(process, workers)])

    base, ours = results["noop"], results["pricing"]
    print("| measure | no-op server | pricing-server | ratio | goal |")
    print("|---|---:|---:|---:|---|")
    print(
        row(
            "PriceOption uncached p50 ms, concurrency 1",
            base["c1"],
            ours["c1"],
            "p50",
            "ratio <= 1.3",
        )
    )
    print(
        row(
            "PriceOption uncached p99 ms, concurrency 1",
            base["c1"],
            ours["c1"],
            "p99",
            "ratio <= 2",
        )
    )
    print(
        row(
            "PriceOption cache hit p50 ms, concurrency 1",
            base["c1"],
            ours["c1_hit"],
            "p50",
            "ratio <= 1.15",
        )
    )
    print(
        row(
            "PriceOption calls/s, 1 worker, concurrency 32",
            base["c32"],
            ours["c32"],
            "rps",
            "ratio >= 0.7",
        )
    )
    print(
        row(
            "PriceBatch 10,000 options p50 ms",
            base["batch"],
            ours["batch"],
            "p50",
            "pricing-server <= 15 ms",
        )
    )
    two, one = results["workers2"]["c32x8"], results["workers1"]["c32x8"]
    print(f"| PriceOption calls/s, 2 workers vs 1 (2 client processes x 8 channels) | {one['rps']:,.0f} (1 worker) "
          f"| {two['rps']:,.0f} (2 workers) | {two['rps'] / one['rps']:.2f} | reported |")  # fmt: skip
    factor = SEED_LATENCY_MS / float(ours["c1"]["p50"])
    print(
        f"| seed's 1,600 ms per prediction vs PriceOption p50 | 1,600 | {float(ours['c1']['p50']):.3f} | 1/{factor:,.0f} | stated |"
    )
    errors = {
        name: run["errors"]
        for group in results.values()
        for name, run in group.items()
        if run["errors"]
    }
    print(f"\nerrors in any run: {errors or 'none'}")

    print("\n| concurrency 1, one client alternating the calls | no-op server | pricing-server | ratio | goal |")  # fmt: skip
    print("|---|---:|---:|---:|---|")
    for name, label in PAIRED.items():
        print(row(label, paired["noop"], paired["pricing"], name, "reported"))
    option, forecast = paired["pricing"]["PriceOption"], paired["pricing"]["Forecast"]
    print(f"| pricing-server: Forecast p50 vs PriceOption uncached p50 | {option:.3f} (PriceOption) "
          f"| {forecast:.3f} (Forecast) | {forecast / option:.2f} | ratio <= 2 |")  # fmt: skip

    print("\n| PriceBatch of 10,000 options, server side | ms |")
    print("|---|---:|")
    steps = batch_breakdown()
    for step, ms in steps.items():
        print(f"| {step} | {ms:.3f} |")
    print(f"| total server side | {sum(steps.values()):.3f} |")
    print(f"| end to end p50 (above) | {float(ours['batch']['p50']):.3f} |")

    print("\n| workers | start to SERVING s | resident set per worker MB | goal |")
    print("|---:|---:|---|---|")
    for workers, (seconds_to_serving, rss) in startup.items():
        print(
            f"| {workers} | {seconds_to_serving:.2f} | {', '.join(f'{m:.0f}' for m in rss)} | <= 2 s, <= 250 MB |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
