"""The two-tier cache with a real redis-server: shared hits, and outages that cost nothing."""

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis

from redis_process import RedisProcess
from server_process import ServerProcess
from shared.api import pricing_pb2 as pb

MODELS = Path(__file__).resolve().parents[1] / "models"


def request(strike):
    return pb.PriceOptionRequest(
        type=pb.CALL, spot=100.0, strike=strike, tau=0.8, rate=0.02, volatility=0.3
    )


def test_a_second_server_gets_the_first_ones_quotes_from_redis(redis_url):
    redis.Redis.from_url(redis_url).flushdb()
    first = ServerProcess(MODELS, "--redis-url", redis_url)
    try:
        original = first.stub().PriceOption(request(101.5))
        assert not original.cached
    finally:
        assert first.stop() == 0
    second = ServerProcess(MODELS, "--redis-url", redis_url)  # its own, empty in-process cache
    try:
        again = second.stub().PriceOption(request(101.5))
        assert again.cached
        assert (again.price, again.greeks, again.model_version) == (
            original.price,
            original.greeks,
            original.model_version,
        )
        assert 'pricing_cache_lookups_total{result="hit",tier="redis"} 1.0' in second.metrics()
    finally:
        assert second.stop() == 0


def test_garbage_in_redis_is_ignored(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    server = ServerProcess(MODELS, "--redis-url", redis_url)
    try:
        stub = server.stub()
        good = stub.PriceOption(request(88.0))
        time.sleep(0.2)  # the write to Redis happens after the reply
        [key] = client.keys("pinn:*")
        client.set(key, b"\x00\x00\xf8\x7f" * 24)  # 96 bytes of NaN
        fresh = ServerProcess(MODELS, "--redis-url", redis_url)
        try:
            reply = fresh.stub().PriceOption(request(88.0))
            assert not reply.cached and reply.price == good.price
        finally:
            fresh.stop()
    finally:
        assert server.stop() == 0


def run_load(stub, seconds, latencies, failures, seed):
    rng = np.random.default_rng(seed)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            reply = stub.PriceOption(request(float(rng.uniform(60, 180))), timeout=5)
            assert reply.price >= 0
            latencies.append(time.perf_counter() - start)
        except grpc.RpcError as error:
            failures.append(error.code())


@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_redis_outage_keeps_every_call_correct_and_fast(tmp_path, outage):
    store = RedisProcess(tmp_path)
    server = ServerProcess(MODELS, "--redis-url", store.url, "--redis-cooldown", "0.5")
    stub = server.stub()
    try:
        before, failures = [], []
        run_load(stub, 0.5, before, failures, seed=1)
        during: list[float] = []
        threads = [
            threading.Thread(target=run_load, args=(stub, 2.0, during, failures, s))
            for s in range(4)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        if outage == "killed":
            store.kill()
        else:
            store.freeze()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(during) > 100
        p99 = float(np.percentile(during, 99))
        assert p99 < 0.100, f"p99 over the outage {p99 * 1000:.1f} ms"
        assert 'pricing_redis_events_total{event="error"}' in server.metrics()

        if outage == "killed":
            store = store.restart()
        else:
            store.thaw()
        redis.Redis(port=store.port).flushdb()
        time.sleep(0.6)  # the circuit breaker's cooldown
        deadline = time.monotonic() + 10
        while redis.Redis(port=store.port).dbsize() == 0:  # writes resume once Redis answers
            assert time.monotonic() < deadline, "the cache never used Redis again"
            stub.PriceOption(request(float(np.random.default_rng().uniform(60, 180))), timeout=5)
            time.sleep(0.05)
    finally:
        assert server.stop() == 0
        store.stop()
