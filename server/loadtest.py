"""pricing-loadtest: a bounded load generator for PricingService, for benchmarks and for people.

    pricing-loadtest --target 127.0.0.1:50051 [--method PriceBatch] [--concurrency 8 | --rate R]
                     [--duration 10] [--count N] [--processes 1] [--channels 4] [--json PATH]

--concurrency keeps N calls in flight per client process (closed loop); --rate sends on a fixed
schedule whatever the replies (open loop). Requests are serialised before the clock starts and
replies are never parsed, so the client spends its time sending; each call's status and latency
are recorded. Only --target is ever contacted, and it must be a loopback address unless
--allow-remote is given.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import multiprocessing
import queue
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from server.loadtest_report import LoadReport, ProcessResult, summarise
from server.loadtest_requests import Payload, build_payloads

METHODS = ("PriceOption", "PriceBatch")
DEFAULT_DURATION_S = 10.0
# No run lasts longer than this, or than --duration when that is longer.
CEILING_S = 600.0
# Open loop, per process: past this many calls in flight the sender waits for one to finish.
MAX_IN_FLIGHT = 4096
# Time allowed, on top of the run itself, for client processes to start, build and connect.
SETUP_TIMEOUT_S = 60.0
# The settings that must be positive when given.
POSITIVE = ("concurrency", "rate", "duration", "count", "processes", "channels", "batch_size",
            "distinct", "timeout")  # fmt: skip
CHANNEL_OPTIONS = [
    # Without a local pool, every channel to the same target shares one connection.
    ("grpc.use_local_subchannel_pool", 1),
    # PriceBatch replies grow with --batch-size; the default cap is 4 MB.
    ("grpc.max_receive_message_length", -1),
]


class TargetUnreachable(RuntimeError):
    """Nothing answered at the target, so no load was sent."""


@dataclass
class LoadConfig:
    """One run: concurrency 8 unless a rate is given; without duration or count, 10 s."""

    target: str
    method: str = "PriceOption"
    concurrency: int | None = None
    rate: float | None = None
    duration: float | None = None
    count: int | None = None
    processes: int = 1
    channels: int = 4
    batch_size: int = 10_000
    distinct: int = 1_000_000
    seed: int = 0
    timeout: float = 5.0
    allow_remote: bool = False

    def __post_init__(self) -> None:
        """Refuse, naming the flag, what must not or cannot run: before anything is sent."""
        host = target_host(self.target)
        if not self.allow_remote and not is_loopback(host):
            raise ValueError(
                f"--target {self.target} is not a loopback address; "
                "pass --allow-remote to load a remote server"
            )
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method}")
        if self.concurrency is not None and self.rate is not None:
            raise ValueError("give either --concurrency or --rate, not both")
        if self.rate is None and self.concurrency is None:
            self.concurrency = 8
        for name in POSITIVE:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")

    @property
    def time_limit_s(self) -> float:
        if self.duration is not None:
            return self.duration
        return CEILING_S if self.count is not None else DEFAULT_DURATION_S

    @property
    def rows_per_call(self) -> int:
        return self.batch_size if self.method == "PriceBatch" else 1


def target_host(target: str) -> str:
    """The host of HOST:PORT, without the brackets of an IPv6 address."""
    host, _, port = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"--target {target}: write an IPv6 address in brackets, as [::1]:PORT")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--target {target}: expected HOST:PORT")
    return host


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    """One process's share of the load, and what it measured: OK latencies, errors by code."""

    def __init__(self, config: LoadConfig, process: int, methods: list, payload: Payload) -> None:
        self.config, self.process, self.methods, self.payload = config, process, methods, payload
        count = config.count
        self.share = None if count is None else len(range(process, count, config.processes))
        self.latencies: list[int] = []
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.start_ns = time.perf_counter_ns()
        self.deadline_ns = self.start_ns + int(config.time_limit_s * 1e9)

    def indices(self) -> Iterator[int]:
        return iter(range(self.share)) if self.share is not None else itertools.count()

    async def call(self, k: int, due_ns: int | None = None) -> None:
        """The k-th call; its latency counts from `due_ns` when given, else from now."""
        self.sent += 1
        start = due_ns or time.perf_counter_ns()
        try:
            await self.methods[k % len(self.methods)](self.payload(k), timeout=self.config.timeout)
        except grpc.aio.AioRpcError as error:
            self.errors[error.code().name] += 1
        else:
            self.latencies.append(time.perf_counter_ns() - start)

    async def closed_loop(self) -> None:
        indices = self.indices()

        async def lane() -> None:
            for k in indices:
                if time.perf_counter_ns() >= self.deadline_ns:
                    return
                await self.call(k)

        await asyncio.gather(*(lane() for _ in range(self.config.concurrency or 0)))

    async def open_loop(self) -> None:
        """Sends on schedule whatever the replies. Latency counts from when each call was due, so
        falling behind (at the server, or at the cap on calls in flight) shows as latency."""
        # Each process takes every `processes`-th slot of one schedule at `rate` in total.
        rate = self.config.rate or 0.0
        interval_ns = self.config.processes * 1e9 / rate
        first_ns = self.start_ns + int(self.process * 1e9 / rate)
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        in_flight: set[asyncio.Task] = set()
        for k in self.indices():
            due_ns = first_ns + int(k * interval_ns)
            if due_ns >= self.deadline_ns:
                break
            # Sleeps even when late, so that the calls already sent get on.
            await asyncio.sleep(max(due_ns - time.perf_counter_ns(), 0) / 1e9)
            await slots.acquire()
            if time.perf_counter_ns() >= self.deadline_ns:
                break
            task = asyncio.create_task(self.call(k, due_ns))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            task.add_done_callback(lambda _: slots.release())
        await asyncio.gather(*in_flight)

    async def stop_on(self, stop: Any) -> None:
        """Brings the deadline forward once the parent sets `stop` (on Ctrl-C)."""
        while not stop.is_set():
            await asyncio.sleep(0.1)
        self.deadline_ns = time.perf_counter_ns()

    def result(self) -> ProcessResult:
        elapsed_ns = time.perf_counter_ns() - self.start_ns
        latencies = np.array(self.latencies, np.int64)
        return ProcessResult(latencies, dict(self.errors), self.sent, elapsed_ns)


async def drive(config: LoadConfig, process: int, ready: Any, stop: Any) -> ProcessResult:
    """One client process's run: build its requests, connect, wait for the others, send."""
    payload = build_payloads(config, process)
    path = f"/pricing.v1.PricingService/{config.method}"
    channels = [
        grpc.aio.insecure_channel(config.target, options=CHANNEL_OPTIONS)
        for _ in range(config.channels)
    ]
    try:
        methods = [channel.unary_unary(path) for channel in channels]
        failure = None
        # One untimed call per channel, so that connecting is not part of the run.
        for method in methods:
            try:
                await method(payload(0), timeout=config.timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    failure = f"{config.target} is unavailable: {error.details()}"
        await asyncio.to_thread(ready.wait)
        if failure is not None:
            return ProcessResult(np.empty(0, np.int64), {}, 0, 0, failure)
        client = Client(config, process, methods, payload)
        watcher = asyncio.create_task(client.stop_on(stop))
        await (client.closed_loop() if config.rate is None else client.open_loop())
        watcher.cancel()
        return client.result()
    finally:
        for channel in channels:
            await channel.close()


def process_main(config: LoadConfig, process: int, ready: Any, stop: Any, results: Any) -> None:
    """A client process: the parent turns Ctrl-C into `stop`, so it ignores SIGINT itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results.put(asyncio.run(drive(config, process, ready, stop)))


def run_load(config: LoadConfig) -> LoadReport:
    """Run `config` in config.processes spawned client processes and add up what they measured.

    Called from a script, that script's main code must sit under `if __name__ == "__main__":`,
    as spawned processes import it. Raises TargetUnreachable when nothing answers."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(config.processes, timeout=SETUP_TIMEOUT_S)
    stop = context.Event()
    results = context.Queue()
    processes = [
        context.Process(target=process_main, args=(config, p, ready, stop, results), daemon=True)
        for p in range(config.processes)
    ]
    for process in processes:
        process.start()
    give_up = time.monotonic() + SETUP_TIMEOUT_S + config.time_limit_s + config.timeout
    collected: list[ProcessResult] = []
    try:
        while len(collected) < len(processes):
            try:
                collected.append(results.get(timeout=0.2))
            except queue.Empty:
                if any(process.exitcode not in (None, 0) for process in processes):
                    raise RuntimeError("a client process failed; its error is above") from None
                if time.monotonic() > give_up:
                    raise RuntimeError("the client processes did not finish in time") from None
            except KeyboardInterrupt:
                stop.set()
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    failures = sorted({result.failure for result in collected if result.failure})
    if failures:
        raise TargetUnreachable("; ".join(failures))
    return summarise(config, collected)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricing-loadtest", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--target", required=True, metavar="HOST:PORT", help="the only address contacted")
    add("--allow-remote", action="store_true", help="allow a non-loopback --target")
    add("--method", choices=METHODS, default="PriceOption")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--concurrency", type=int, help="calls in flight per process (default 8)")
    pace.add_argument("--rate", type=float, help="calls per second in total, sent on schedule")
    add("--duration", type=float, help="seconds to send for (default 10 without --count)")
    add("--count", type=int, help="calls to send in total")
    add("--processes", type=int, default=1, help="client processes (default 1)")
    add("--channels", type=int, default=4, help="connections per process (default 4)")
    add("--batch-size", type=int, default=10_000, help="PriceBatch rows (default 10000)")
    add("--distinct", type=int, default=1_000_000, help="distinct options; 1: all the same")
    add("--seed", type=int, default=0, help="seed of the random options (default 0)")
    add("--timeout", type=float, default=5.0, help="deadline of each call, s (default 5)")
    add("--json", metavar="PATH", help="also write the report as JSON; '-': print it instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    try:
        config = LoadConfig(
            **{field.name: getattr(args, field.name) for field in fields(LoadConfig)}
        )
    except ValueError as error:
        cli.error(str(error))
    try:
        report = run_load(config)
    except TargetUnreachable as error:
        print(f"pricing-loadtest: no call succeeded: {error}", file=sys.stderr)
        return 1
    if args.json == "-":
        print(report.to_json())
    else:
        print(report.to_markdown())
        if args.json:
            Path(args.json).write_text(report.to_json() + "\n")
    if report.ok == 0:
        print(
            f"pricing-loadtest: no call to {config.target} succeeded: {report.errors}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
