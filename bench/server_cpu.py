"""Server CPU time per PriceOption call: pricing-server against the no-op server.

    .venv/bin/python bench/server_cpu.py [--seconds 3] [--pin]

Latency ratios move with a shared machine's noise; the CPU a server spends per call is
steadier and says where a goal's time goes. For uncached calls at concurrency 1 and 32 and
cache hits at concurrency 1, it prints the CPU time per call of each server process (all its
threads) and of its event loop's thread alone (which saturates first under load), read from
/proc, and the rows pricing-server ran per onnxruntime call. With --pin the servers get the
first half of the cores, the load generator the rest.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

from server_latency import free_port, histogram_totals, load, noop, place, pricing, running
from timing import machine

TICK = 1.0 / os.sysconf("SC_CLK_TCK")  # seconds per /proc clock tick


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(process, main thread) CPU seconds so far: utime + stime from /proc."""

    def used(stat: Path) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK  # fields 14 and 15 of proc(5)

    return used(Path(f"/proc/{pid}/stat")), used(Path(f"/proc/{pid}/task/{pid}/stat"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each load run")
    parser.add_argument("--pin", action="store_true", help="servers and client on separate cores")
    args = parser.parse_args()
    server_cores, placement = place(parser, args.pin)
    print(f"machine: {machine()}; every load run {args.seconds:g} s; {placement}\n")
    runs = {
        "uncached, concurrency 1": {"concurrency": 1, "processes": 1, "channels": 1},
        "cache hit, concurrency 1": {
            "concurrency": 1,
            "processes": 1,
            "channels": 1,
            "distinct": 1,
        },
        "uncached, concurrency 32": {"concurrency": 16, "processes": 2, "channels": 4},
    }
    seeds = itertools.count(1)  # a new seed per uncached run: its options miss the cache
    noop_port, port, metrics_port = free_port(), free_port(), free_port()
    print("| PriceOption calls | server | calls/s | CPU us per call | event loop thread us per call "
          "| rows per model run |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|")
    with (
        running(noop(noop_port), noop_port, False, server_cores) as (noop_process, _),
        running(pricing(port, metrics_port=metrics_port), port, True, server_cores) as (
            process, _),
    ):  # fmt: skip
        for name, settings in runs.items():
            for server, server_port, pid in (
                ("no-op", noop_port, noop_process.pid),
                ("pricing-server", port, process.pid),
            ):
                batches = histogram_totals(metrics_port, "pricing_batch_rows")
                before = cpu_seconds(pid)
                report = load(server_port, args.seconds, seed=next(seeds), **settings)
                spent = [b - a for a, b in zip(before, cpu_seconds(pid), strict=True)]
                runs_now, rows_now = histogram_totals(metrics_port, "pricing_batch_rows")
                ran = runs_now - batches[0]
                rows = f"{(rows_now - batches[1]) / ran:.1f}" if server != "no-op" and ran else ""
                calls = float(report["ok"])
                print(f"| {name} | {server} | {report['rps']:,.0f} | {spent[0] / calls * 1e6:.0f} "
                      f"| {spent[1] / calls * 1e6:.0f} | {rows} |")  # fmt: skip


if __name__ == "__main__":
    main()
