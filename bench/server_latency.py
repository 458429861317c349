"""pricing-server against a no-op gRPC server with the same messages, side by side in one run.

    .venv/bin/python bench/server_latency.py [--seconds 5] [--rounds 3] [--pin]

Starts bench/noop_server.py and pricing-server (the committed models, in-process cache) on
free loopback ports, drives both with pricing-loadtest's `run_load`, and prints one table per
goal of the server issue with the ratio to the no-op server. The concurrency-1 and -32 runs
take turns between the two servers for `--rounds` rounds: each figure is the median over the
rounds, each ratio that of the medians, with the rounds' own ratios in brackets. Forecast (AAPL, 130 closes) is
timed against uncached PriceOption by one client alternating the two calls. Client and
servers share this machine's cores (with --pin: the servers get the first half, the load
generator the rest), so absolute throughput is the machine's; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.config import ServerConfig
from server.loadtest import LoadConfig, run_load
from server.loadtest_requests import OPTION_WIRE, encode_options, sample_rows
from server.model import KIND, NAME, load_pinn
from server.requests import batch_rows
from server.service import run_split
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


def pricing(
    port: int, workers: int = 1, metrics_port: int = 0, models: Path = REPO / "models"
) -> list[str]:
    return [sys.executable, "-m", "server.main", "--host", "127.0.0.1", "--port", str(port), "--models",
            str(models), "--metrics-port", str(metrics_port), "--workers", str(workers),
            "--log-level", "WARNING"]  # fmt: skip


def histogram_totals(metrics_port: int, histogram: str) -> tuple[float, float]:
    """(count, sum) of an unlabelled histogram the server exports, so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    count, total = (
        float(re.search(rf"^{histogram}_{name} (\S+)$", text, re.M).group(1))
        for name in ("count", "sum")
    )
    return count, total


def model_runs(metrics_port: int) -> tuple[float, float]:
    """(runs, seconds) the server's micro-batcher has spent in onnxruntime so far."""
    return histogram_totals(metrics_port, "pricing_model_run_seconds")


def warm_model_run_seconds() -> float:
    """One PriceOption's model run (call and put) in this process, timed in a tight loop."""
    model = load_pinn(ArtifactStore(REPO / "models").load(KIND, NAME))
    contract = (100.0, 110.0, 0.5, 0.02, 0.3, 0.0)  # spot, strike, tau, rate, volatility, yield
    return best_seconds(lambda: model.quotes([contract]))


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


def place(parser: argparse.ArgumentParser, pin: bool) -> tuple[set[int] | None, str]:
    """With `pin`, the servers' cores (the first half; this process and the load generator's
    get the rest) and where everything runs, in words; else None and "share all cores"."""
    if not pin:
        return None, "client and servers share all cores"
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        parser.error("--pin needs at least 2 cores")
    server_cores, client_cores = set(cores[: len(cores) // 2]), set(cores[len(cores) // 2 :])
    os.sched_setaffinity(0, client_cores)  # the load generator's processes inherit it
    return (
        server_cores,
        f"servers on cores {sorted(server_cores)}, client on {sorted(client_cores)}",
    )


def load(port: int, seconds: float, **settings: object) -> dict[str, object]:
    report = run_load(LoadConfig(target=f"127.0.0.1:{port}", duration=seconds, **settings))
    return {
        "ok": report.ok,
        "errors": report.errors,
        "rps": report.throughput_rps,
        **report.latency_ms,
    }


def forecast_and_option_p50(port: int, seconds: float, seed: int) -> dict[str, float]:
    """p50 ms of Forecast and of uncached PriceOption at concurrency 1, from one client that
    alternates the two calls, so both meet the same (noisy) machine. Options of `seed`."""
    moves = np.random.default_rng(0).normal(0.0, 0.015, FORECAST_CLOSES)
    closes = (100.0 * np.exp(np.cumsum(moves))).tolist()
    forecast = pb.ForecastRequest(symbol="AAPL", closes=closes).SerializeToString()
    options = encode_options(sample_rows(np.random.default_rng(seed), DISTINCT_OPTIONS))
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
    threads = ServerConfig().batch_thread_count  # as pricing-server splits it by default

    def reply() -> bytes:
        columns = dict(
            zip(
                ("price", "delta", "gamma", "theta", "vega", "rho"),
                (c.tolist() for c in outputs),
                strict=True,
            )
        )
        return pb.PriceBatchResponse(**columns, model_version=model.version).SerializeToString()

    with ThreadPoolExecutor(threads) as pool, contextlib.closing(asyncio.new_event_loop()) as loop:
        return {
            "parse": best_seconds(lambda: pb.PriceBatchRequest.FromString(wire)) * 1e3,
            "validate + columns to rows": best_seconds(
                lambda: batch_rows(parsed, model.domain, 100_000)
            )
            * 1e3,
            f"inference (onnxruntime, {threads} thread{'s' * (threads > 1)})": best_seconds(
                lambda: loop.run_until_complete(run_split(model, x, pool, threads))
            )
            * 1e3,
            "reply (build + serialise)": best_seconds(reply) * 1e3,
        }


def row(label: str, base: list[dict[str, object]], ours: list[dict[str, object]], key: str,
        goal: str) -> str:  # fmt: skip
    """Medians over the rounds of both sides, their ratio, and the range of the rounds' ratios."""
    base_values = [float(run[key]) for run in base]
    our_values = [float(run[key]) for run in ours]
    ratios = [o / b for o, b in zip(our_values, base_values, strict=True)]
    median_base, median_ours = float(np.median(base_values)), float(np.median(our_values))
    spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return (
        f"| {label} | {median_base:,.3f} | {median_ours:,.3f} "
        f"| {median_ours / median_base:.2f}{spread} | {goal} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the concurrency-1 and -32 runs are repeated this often, no-op and pricing-server "
        "in turn, so both meet the same drifts of a shared machine (default 3)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on the first half of the cores, the load generator on the others, so "
        "the client no longer competes with the server for a core and its caches",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    seconds = args.seconds
    server_cores, placement = place(parser, args.pin)
    print(
        f"machine: {machine()}; every load run {seconds:g} s; {args.rounds} rounds; {placement}\n"
    )
    single = {"concurrency": 1, "processes": 1, "channels": 1}
    wide = {"concurrency": 16, "processes": 2, "channels": 4}  # 32 in flight, two client processes
    batch = {
        "method": "PriceBatch",
        "batch_size": 10_000,
        "concurrency": 1,
        "processes": 1,
        "channels": 1,
    }
    several = {"concurrency": 32, "processes": 2, "channels": 8}
    # A new seed for every run meant to miss the cache: runs of one seed send the same options,
    # which the run before would have left in the server's cache.
    seeds = itertools.count(1)
    # Per measure, one run per round; the no-op server answers a cache hit like any call.
    base: dict[str, list[dict[str, object]]] = {"c1": [], "c32": []}
    ours: dict[str, list[dict[str, object]]] = {"c1": [], "c1_hit": [], "c32": []}
    workers: dict[int, dict[str, object]] = {}
    paired: dict[str, dict[str, float]] = {}
    startup: dict[int, tuple[float, list[float]]] = {}

    noop_port, port, metrics_port = free_port(), free_port(), free_port()
    in_server = [0.0, 0.0]  # model runs and their seconds during the uncached concurrency-1 runs
    with (
        running(noop(noop_port), noop_port, False, server_cores),
        running(pricing(port, metrics_port=metrics_port), port, True, server_cores) as (
            process, to_serving),
    ):  # fmt: skip
        for _ in range(args.rounds):
            base["c1"].append(load(noop_port, seconds, **single))
            before = model_runs(metrics_port)
            ours["c1"].append(load(port, seconds, seed=next(seeds), **single))
            in_server = [a + now - then for a, now, then in
                         zip(in_server, model_runs(metrics_port), before, strict=True)]  # fmt: skip
            ours["c1_hit"].append(load(port, seconds, distinct=1, **single))
            base["c32"].append(load(noop_port, seconds, **wide))
            ours["c32"].append(load(port, seconds, seed=next(seeds), **wide))
        base["batch"] = [load(noop_port, seconds, **batch)]
        ours["batch"] = [load(port, seconds, **batch)]
        paired["noop"] = forecast_and_option_p50(noop_port, seconds, seed=0)
        paired["pricing"] = forecast_and_option_p50(port, seconds, seed=next(seeds))
        workers[1] = load(port, seconds, seed=next(seeds), **several)
        startup[1] = (to_serving, [rss_mb(process.pid)])
    port = free_port()
    with running(pricing(port, 2), port, True, server_cores) as (process, to_serving):
        workers[2] = load(port, seconds, seed=next(seeds), **several)
        startup[2] = (to_serving, [rss_mb(pid) for pid in worker_pids(process, 2)])

    print("| measure | no-op server | pricing-server | ratio (rounds) | goal |")
    print("|---|---:|---:|---:|---|")
    c1 = "concurrency 1"
    print(row(f"PriceOption uncached p50 ms, {c1}", base["c1"], ours["c1"], "p50", "ratio <= 1.3"))
    print(row(f"PriceOption uncached p99 ms, {c1}", base["c1"], ours["c1"], "p99", "ratio <= 2"))
    print(row(f"PriceOption cache hit p50 ms, {c1}", base["c1"], ours["c1_hit"], "p50",
              "ratio <= 1.15"))  # fmt: skip
    print(row("PriceOption calls/s, 1 worker, concurrency 32", base["c32"], ours["c32"], "rps",
              "ratio >= 0.7"))  # fmt: skip
    print(row("PriceBatch 10,000 options p50 ms", base["batch"], ours["batch"], "p50",
              "pricing-server <= 15 ms"))  # fmt: skip
    one, two = workers[1]["rps"], workers[2]["rps"]
    print(f"| PriceOption calls/s, 2 workers vs 1 (2 client processes x 8 channels) | {one:,.0f} (1 worker) "
          f"| {two:,.0f} (2 workers) | {two / one:.2f} | reported |")  # fmt: skip
    p50 = float(np.median([float(run["p50"]) for run in ours["c1"]]))
    print(f"| seed's 1,600 ms per prediction vs PriceOption p50 | 1,600 | {p50:.3f} "
          f"| 1/{SEED_LATENCY_MS / p50:,.0f} | stated |")  # fmt: skip
    runs = [*workers.values()] + [
        run for side in (base, ours) for group in side.values() for run in group
    ]
    errors = [run["errors"] for run in runs if run["errors"]]
    print(f"\nerrors in any run: {errors or 'none'}")

    print("\n| concurrency 1, one client alternating the calls | no-op server | pricing-server | ratio | goal |")  # fmt: skip
    print("|---|---:|---:|---:|---|")
    for name, label in PAIRED.items():
        print(row(label, [paired["noop"]], [paired["pricing"]], name, "reported"))
    option, forecast = paired["pricing"]["PriceOption"], paired["pricing"]["Forecast"]
    print(f"| pricing-server: Forecast p50 vs PriceOption uncached p50 | {option:.3f} (PriceOption) "
          f"| {forecast:.3f} (Forecast) | {forecast / option:.2f} | ratio <= 2 |")  # fmt: skip

    print("\n| one PriceOption's model run (call and put, padded to 4 rows) | us |")
    print("|---|---:|")
    print(f"| in a loop in this process, caches warm | {warm_model_run_seconds() * 1e6:.1f} |")
    print(f"| inside pricing-server, uncached concurrency-1 runs, mean of "
          f"{in_server[0]:,.0f} | {in_server[1] / in_server[0] * 1e6:.1f} |")  # fmt: skip

    print("\n| PriceBatch of 10,000 options, server side | ms |")
    print("|---|---:|")
    steps = batch_breakdown()
    for step, ms in steps.items():
        print(f"| {step} | {ms:.3f} |")
    print(f"| total server side | {sum(steps.values()):.3f} |")
    print(f"| end to end p50 (above) | {float(ours['batch'][0]['p50']):.3f} |")

    print("\n| workers | start to SERVING s | resident set per worker MB | goal |")
    print("|---:|---:|---|---|")
    for workers, (seconds_to_serving, rss) in startup.items():
        print(
            f"| {workers} | {seconds_to_serving:.2f} | {', '.join(f'{m:.0f}' for m in rss)} | <= 2 s, <= 250 MB |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
