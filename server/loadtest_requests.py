"""The requests pricing-loadtest sends, serialised before the clock starts.

PriceOption requests are written straight in the protobuf wire format with numpy: a million
messages built through pricing_pb2 cost seconds and hundreds of MB per client process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from shared.api import pricing_pb2

if TYPE_CHECKING:
    from server.loadtest import LoadConfig

# Distinct PriceBatch requests kept serialised per process (25 MB at 10,000 rows each).
MAX_POOL_BATCHES = 100
# The serialised request of a process's k-th call.
Payload = Callable[[int], bytes]
# PriceOptionRequest fields 2-7, all doubles, in field-number order.
OPTION_DOUBLES = ("spot", "strike", "tau", "rate", "volatility", "dividend_yield")
# One serialised PriceOptionRequest: every field present, each a one-byte tag and its value.
OPTION_WIRE = np.dtype(
    [("type_tag", "u1"), ("type", "u1")]
    + [item for name in OPTION_DOUBLES for item in ((f"{name}_tag", "u1"), (name, "<f8"))]
)


def sample_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n options inside the server's domain, calls and puts alternating."""
    return {
        "type": np.where(np.arange(n) % 2 == 0, pricing_pb2.CALL, pricing_pb2.PUT),
        "spot": np.full(n, 100.0),
        "strike": rng.uniform(60.0, 180.0, n),
        "tau": rng.uniform(0.05, 2.5, n),
        "rate": rng.uniform(0.0, 0.05, n),
        "volatility": rng.uniform(0.1, 0.8, n),
        "dividend_yield": rng.uniform(0.0, 0.03, n),
    }


def encode_options(rows: dict[str, np.ndarray]) -> bytes:
    """PriceOptionRequests serialised back to back, OPTION_WIRE.itemsize bytes each.

    This is the standard proto3 encoding that pricing_pb2 parses, written with numpy because a
    million messages built through pricing_pb2 cost seconds and hundreds of MB per process."""
    records = np.empty(len(rows["type"]), OPTION_WIRE)
    records["type_tag"] = 1 << 3  # field 1, varint
    records["type"] = rows["type"]
    for number, name in enumerate(OPTION_DOUBLES, start=2):
        records[f"{name}_tag"] = number << 3 | 1  # 64-bit
        records[name] = rows[name]
    return records.tobytes()


def encode_batches(rows: dict[str, np.ndarray], batch_size: int, batches: int) -> list[bytes]:
    """PriceBatchRequests that take consecutive rows, wrapping around; spot, rate and volatility
    are sent once per batch (length 1), as clients pricing one underlying do."""
    requests = []
    for batch in range(batches):
        taken = (batch * batch_size + np.arange(batch_size)) % len(rows["type"])
        first = taken[0]
        request = pricing_pb2.PriceBatchRequest(
            spot=[rows["spot"][first]],
            rate=[rows["rate"][first]],
            volatility=[rows["volatility"][first]],
            **{
                name: rows[name][taken].tolist()
                for name in ("type", "strike", "tau", "dividend_yield")
            },
        )
        requests.append(request.SerializeToString())
    return requests


def build_payloads(config: LoadConfig, process: int) -> Payload:
    """The serialised request for this process's k-th call. Every process draws the same pool
    (so --distinct counts across processes) and starts at its own place in it."""
    wanted = config.count if config.count is not None else math.inf
    if config.method == "PriceOption":
        pool = int(min(config.distinct, wanted))
        rows = sample_rows(np.random.default_rng(config.seed), pool)
        blob, size = encode_options(rows), OPTION_WIRE.itemsize
        start = process * pool // config.processes
        return lambda k: blob[(start + k) % pool * size : ((start + k) % pool + 1) * size]
    pool = int(min(MAX_POOL_BATCHES, -(-config.distinct // config.batch_size), wanted))
    rows = sample_rows(
        np.random.default_rng(config.seed), min(config.distinct, pool * config.batch_size)
    )
    requests = encode_batches(rows, config.batch_size, pool)
    start = process * pool // config.processes
    return lambda k: requests[(start + k) % pool]
