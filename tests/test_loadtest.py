"""pricing-loadtest against the no-op server of bench/: real processes, real sockets."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redis_process import free_port
from server.loadtest import LoadConfig
from server.loadtest_requests import build_payloads
from shared.api import pricing_pb2

REPO = Path(__file__).resolve().parents[1]
# Warnings in the load tester's processes fail the test, as they do in this one.
ENV = {**os.environ, "PYTHONWARNINGS": "error"}


@pytest.fixture(scope="module")
def noop_target():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "noop_server.py"), "--port", str(port)],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert server.poll() is None, "the no-op server exited"
            assert time.monotonic() < deadline, "the no-op server did not start"
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def loadtest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.loadtest", *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def report(*args: str) -> dict:
    result = loadtest(*args, "--json", "-")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_price_option_count(noop_target):
    data = report("--target", noop_target, "--count", "200", "--concurrency", "4")
    assert data["ok"] == data["sent"] == 200
    assert data["errors"] == {}
    assert data["method"] == "PriceOption"
    latency = [data["latency_ms"][name] for name in ("p50", "p90", "p99", "p999", "max")]
    assert latency[0] > 0
    assert latency == sorted(latency)
    assert data["throughput_rps"] == data["options_per_s"] > 0


def test_price_batch_in_two_processes(noop_target):
    data = report(
        "--target", noop_target, "--method", "PriceBatch", "--batch-size", "1000",
        "--count", "20", "--processes", "2",
    )  # fmt: skip
    assert data["ok"] == 20
    assert data["errors"] == {}
    assert data["options_per_s"] == pytest.approx(1000 * data["throughput_rps"])
    assert data["options_per_s"] > 0


def test_fixed_rate_for_a_duration(noop_target, tmp_path):
    started = time.monotonic()
    result = loadtest(
        "--target", noop_target, "--duration", "1", "--rate", "200",
        "--json", str(tmp_path / "report.json"),
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.returncode == 0, result.stderr
    assert "| throughput |" in result.stdout
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["rate"] == 200 and data["concurrency"] is None
    assert 100 <= data["ok"] <= 260


def test_nothing_listening_exits_1():
    result = loadtest("--target", f"127.0.0.1:{free_port()}", "--count", "10")
    assert result.returncode == 1
    assert "no call succeeded" in result.stderr
    assert "unavailable" in result.stderr


@pytest.mark.parametrize("target", ["10.1.2.3:50051", "example.com:50051", "[2001:db8::1]:50051"])
def test_remote_target_refused_without_allow_remote(target):
    result = loadtest("--target", target, "--count", "10")
    assert result.returncode == 2
    assert f"--target {target} is not a loopback address" in result.stderr
    assert result.stdout == ""


def test_option_requests_parse_as_the_rows_they_encode():
    config = LoadConfig(target="127.0.0.1:1", count=6, distinct=4, seed=3)
    payload = build_payloads(config, process=0)
    requests = [pricing_pb2.PriceOptionRequest.FromString(payload(k)) for k in range(6)]
    assert [r.type for r in requests[:4]] == [pricing_pb2.CALL, pricing_pb2.PUT] * 2
    assert requests[4] == requests[0] and requests[5] == requests[1]
    assert len({r.SerializeToString() for r in requests}) == 4
    for request in requests:
        assert request.spot == 100.0
        assert 60 <= request.strike <= 180 and 0.05 <= request.tau <= 2.5
        assert 0 <= request.rate <= 0.05 and 0.1 <= request.volatility <= 0.8
        assert 0 <= request.dividend_yield <= 0.03


def batch_request(**settings) -> pricing_pb2.PriceBatchRequest:
    config = LoadConfig(target="127.0.0.1:1", method="PriceBatch", **settings)
    return pricing_pb2.PriceBatchRequest.FromString(build_payloads(config, process=0)(0))


def test_batch_requests_broadcast_the_market():
    request = batch_request(batch_size=6)
    assert len(request.spot) == len(request.rate) == len(request.volatility) == 1
    assert len(request.strike) == len(request.tau) == len(request.dividend_yield) == 6
    assert list(request.type) == [pricing_pb2.CALL, pricing_pb2.PUT] * 3
    assert len(set(request.strike)) == 6


def test_distinct_1_repeats_one_option():
    request = batch_request(batch_size=6, distinct=1)
    assert len(set(request.strike)) == len(set(request.type)) == 1
