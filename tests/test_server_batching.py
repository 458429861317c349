"""Micro-batching, the bounded queue and deadlines, through a real server under concurrent load."""

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from server.batching import MicroBatcher, Overloaded
from server.model import KIND, NAME, load_pinn
from server_process import ServerProcess
from shared.api import pricing_pb2 as pb
from shared.artifact_store import ArtifactStore

MODELS = Path(__file__).resolve().parents[1] / "models"


def requests(n, seed):
    rng = np.random.default_rng(seed)
    return [
        pb.PriceOptionRequest(
            type=pb.CALL if i % 2 else pb.PUT, spot=100.0, strike=float(rng.uniform(60, 180)),
            tau=float(rng.uniform(0.05, 2.5)), rate=0.02, volatility=float(rng.uniform(0.1, 0.8)),
        )
        for i in range(n)
    ]  # fmt: skip


def batch_sizes(metrics_text):
    count = float(re.search(r"^pricing_batch_rows_count (\S+)", metrics_text, re.M).group(1))
    total = float(re.search(r"^pricing_batch_rows_sum (\S+)", metrics_text, re.M).group(1))
    return count, total


def test_concurrent_calls_are_coalesced_and_equal_unbatched_answers(tmp_path):
    calls = requests(400, seed=1)
    server = ServerProcess(
        MODELS, "--cache-size", "1"
    )  # a 1-entry cache: every call reaches the model
    try:
        stub = server.stub()
        with ThreadPoolExecutor(32) as pool:
            concurrent = list(pool.map(lambda r: stub.PriceOption(r, timeout=30), calls))
        runs, rows = batch_sizes(server.metrics())
        assert rows == 2 * len(calls)  # a call and a put per request
        assert rows / runs > 2  # more than one request per onnxruntime call, on average

        alone = [stub.PriceOption(r, timeout=30) for r in calls]  # one at a time: batches of 2 rows
        for a, b in zip(concurrent, alone, strict=True):
            assert (a.price, a.greeks) == (b.price, b.greeks)
    finally:
        assert server.stop() == 0


def test_too_many_calls_in_flight_answer_resource_exhausted_at_once():
    server = ServerProcess(MODELS, "--max-concurrent-rpcs", "2", "--cache-size", "1")
    try:
        stub = server.stub()

        def call(request):
            try:
                stub.PriceOption(request, timeout=30)
                return "OK"
            except grpc.RpcError as error:
                return error.code().name

        with ThreadPoolExecutor(48) as pool:
            codes = list(pool.map(call, requests(600, seed=2)))
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
        assert codes.count("RESOURCE_EXHAUSTED") > 0 and codes.count("OK") > 0
    finally:
        assert server.stop() == 0


def test_the_batcher_queue_is_bounded_in_rows():
    model = load_pinn(ArtifactStore(MODELS).load(KIND, NAME))
    rows = np.array([[0.0, 100.0, 100.0, 1.0, 0.01, 0.2, 0.0]] * 2)

    async def burst():
        batcher = MicroBatcher(lambda: model, max_batch_rows=64, max_queue_rows=6)
        # Submitted before the batcher first runs: three fit (6 rows), the rest overflow.
        return await asyncio.gather(*(batcher.run(rows) for _ in range(5)), return_exceptions=True)

    results = asyncio.run(burst())
    assert [isinstance(r, Overloaded) for r in results] == [False, False, False, True, True]
    first = results[0][1]
    assert all(np.array_equal(r[1], first) for r in results[:3])


def test_expired_deadlines_are_dropped_and_the_server_carries_on():
    server = ServerProcess(MODELS, "--cache-size", "1")
    try:
        stub = server.stub()
        big = pb.PriceBatchRequest(
            type=[1],
            spot=[100.0],
            strike=list(np.linspace(60, 180, 50_000)),
            tau=[1.0],
            rate=[0.01],
            volatility=[0.3],
        )
        busy = stub.PriceBatch.future(big, timeout=30)  # occupies the model for a while
        with pytest.raises(grpc.RpcError) as raised:
            stub.PriceOption(requests(1, seed=3)[0], timeout=0.001)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len(busy.result().price) == 50_000
        assert stub.PriceOption(requests(1, seed=4)[0], timeout=10).price > 0
    finally:
        assert server.stop() == 0
