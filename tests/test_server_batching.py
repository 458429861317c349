"""Micro-batching, the bounded queue and deadlines, through a real server under concurrent load."""

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from server.batching import DeadlineExpired, MicroBatcher, Overloaded
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


class RunSizes(list):
    """The rows of each model run, as the batcher reports them (two per contract)."""

    def record(self, rows, seconds):
        self.append(rows)


CONTRACT = (100.0, 100.0, 1.0, 0.01, 0.2, 0.0)  # spot, strike, tau, rate, volatility, yield
NEVER = 3600.0  # a wait no test could sit out: if one happens, asyncio.wait_for below fails


@pytest.fixture(scope="module")
def model():
    return load_pinn(ArtifactStore(MODELS).load(KIND, NAME))


@pytest.fixture
def runs():
    return RunSizes()


def test_the_batcher_queue_is_bounded_in_rows(model):
    async def burst():
        batcher = MicroBatcher(lambda: model, 64, 6, max_wait=0.01)
        # The first run waits (it probes), so all five are submitted while it is pending:
        # three fit (6 rows), the rest overflow.
        return await asyncio.gather(
            *(batcher.run(CONTRACT) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(burst())
    assert [isinstance(r, Overloaded) for r in results] == [False, False, False, True, True]
    assert all(r[1] == results[0][1] for r in results[:3])


def test_waiting_batcher_gathers_calls_that_arrive_during_its_wait(model, runs):
    async def staggered():
        # probe_every=1: the first run waits; the wait is ended by the batch filling up.
        batcher = MicroBatcher(lambda: model, 6, 64, runs.record, max_wait=NEVER, probe_every=1)
        first = asyncio.ensure_future(batcher.run(CONTRACT))
        await asyncio.sleep(0.01)  # the batcher is waiting now
        later = [batcher.run(CONTRACT) for _ in range(2)]
        return await asyncio.wait_for(asyncio.gather(first, *later), 30)

    results = asyncio.run(staggered())
    assert runs == [6]  # three calls, one onnxruntime run
    assert all(r[1] == results[0][1] for r in results)


def test_a_wait_that_gathers_no_one_is_not_repeated_until_the_next_probe(model, runs):
    async def lone_calls():
        batcher = MicroBatcher(lambda: model, 64, 64, runs.record, max_wait=0.5, probe_every=4)
        waited = []
        for _ in range(8):
            start = time.monotonic()
            await asyncio.wait_for(batcher.run(CONTRACT), 30)
            waited.append(time.monotonic() - start >= 0.5)
        return waited

    # Runs 1 and 5 probe (and find no one); the others run at once. Not a timing goal: a
    # run that waits takes 0.5 s at least, one that does not is never delayed that long.
    assert asyncio.run(lone_calls()) == [True, False, False, False] * 2
    assert runs == [2] * 8


def test_rows_whose_deadline_passed_in_the_queue_never_reach_the_model(model, runs):
    async def queued_together():
        batcher = MicroBatcher(lambda: model, 64, 64, runs.record, max_wait=0.01)
        past, future = time.monotonic() - 1, time.monotonic() + 60
        # The first run waits (it probes), so all three queue and share one run.
        return await asyncio.gather(
            batcher.run(CONTRACT, past), batcher.run(CONTRACT, future), batcher.run(CONTRACT),
            return_exceptions=True,
        )  # fmt: skip

    expired, live, unbounded = asyncio.run(queued_together())
    assert isinstance(expired, DeadlineExpired)
    assert runs == [4]  # only the two live requests' rows went to onnxruntime
    assert live[1] == unbounded[1]


def test_calls_that_time_out_under_load_leave_the_server_answering():
    server = ServerProcess(MODELS, "--cache-size", "1")
    try:
        stub = server.stub()
        hurried = [stub.PriceOption.future(r, timeout=0.001) for r in requests(200, seed=3)]
        codes = {call.code() for call in hurried}
        # 200 calls cannot all be answered within 1 ms; the rest may or may not be.
        assert grpc.StatusCode.DEADLINE_EXCEEDED in codes
        assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}
        assert stub.PriceOption(requests(1, seed=4)[0], timeout=10).price > 0
        assert 'code="INTERNAL"' not in server.metrics()
    finally:
        assert server.stop() == 0
