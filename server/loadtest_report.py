"""The summary of a load test: what one client process measured, what the run adds up to, and its
Markdown and JSON forms."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from server.loadtest import LoadConfig

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


@dataclass
class ProcessResult:
    """What one client process measured; `latencies_ns` holds one entry per successful call."""

    latencies_ns: np.ndarray
    errors: dict[str, int]
    sent: int
    elapsed_ns: int
    # Set when the process could not reach the target and so sent nothing.
    failure: str | None = None


@dataclass
class LoadReport:
    """A run's totals; `errors` maps grpc.StatusCode names to counts, latencies are of OK calls."""

    method: str
    target: str
    processes: int
    channels: int
    concurrency: int | None
    rate: float | None
    duration_s: float | None
    count: int | None
    batch_size: int
    sent: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    throughput_rps: float
    options_per_s: float
    latency_ms: dict[str, float | None]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def to_markdown(self) -> str:
        if self.rate is None:
            load = f"closed loop, {self.concurrency} in flight per process"
        else:
            load = f"open loop, {self.rate:,g} calls/s in total"
        errors = ", ".join(f"{code} {n:,}" for code, n in sorted(self.errors.items())) or "none"
        method = self.method if self.batch_size == 1 else f"{self.method}, {self.batch_size:,} rows"
        processes = f"{self.processes} process{'es' if self.processes > 1 else ''}"
        rows = [
            ("method", method),
            ("target", self.target),
            ("clients", f"{processes}, {self.channels} channels each"),
            ("load", load),
            ("sent", f"{self.sent:,}"),
            ("ok", f"{self.ok:,}"),
            ("errors", errors),
            ("elapsed", f"{self.elapsed_s:.3f} s"),
            ("throughput", f"{self.throughput_rps:,.0f} calls/s"),
            ("options/s", f"{self.options_per_s:,.0f}"),
        ]
        rows += [(name, _milliseconds(value)) for name, value in self.latency_ms.items()]
        lines = ["| metric | value |", "|:--|--:|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        return "\n".join(lines)


def _milliseconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def latency_summary(latencies_ns: np.ndarray) -> dict[str, float | None]:
    """Percentiles and maximum in milliseconds; all None when there is no successful call."""
    names = [*PERCENTILES, "max"]
    if latencies_ns.size == 0:
        return dict.fromkeys(names)
    values = np.percentile(latencies_ns, list(PERCENTILES.values())).tolist()
    values.append(float(latencies_ns.max()))
    return {name: value / 1e6 for name, value in zip(names, values, strict=True)}


def summarise(config: LoadConfig, results: list[ProcessResult]) -> LoadReport:
    """The report of a run of `config` whose client processes measured `results`."""
    latencies = np.concatenate([result.latencies_ns for result in results])
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result.errors)
    # The processes start together, so the run lasts as long as the slowest of them.
    elapsed_s = max(result.elapsed_ns for result in results) / 1e9
    throughput = latencies.size / elapsed_s if elapsed_s > 0 else 0.0
    return LoadReport(
        method=config.method,
        target=config.target,
        processes=config.processes,
        channels=config.channels,
        concurrency=config.concurrency,
        rate=config.rate,
        duration_s=None if config.duration is None and config.count else config.time_limit_s,
        count=config.count,
        batch_size=config.rows_per_call,
        sent=sum(result.sent for result in results),
        ok=int(latencies.size),
        errors=dict(sorted(errors.items())),
        elapsed_s=elapsed_s,
        throughput_rps=throughput,
        options_per_s=throughput * config.rows_per_call,
        latency_ms=latency_summary(latencies),
    )
