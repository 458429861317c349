"""Start-up, configuration, graceful shutdown, several workers, metrics."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from redis_process import free_port
from server.config import MAX_AUTO_BATCH_THREADS, ServerConfig, parse_config, usable_cores
from server_process import ServerProcess
from shared.api import pricing_pb2 as pb
from shared.api import pricing_pb2_grpc
from shared.artifact_store import ArtifactStore

MODELS = Path(__file__).resolve().parents[1] / "models"
PINN_VERSION = ArtifactStore(MODELS).current_version("pinn", "default")
BIG = pb.PriceBatchRequest(
    type=[1],
    spot=[100.0],
    strike=list(np.linspace(60, 180, 100_000)),
    tau=[1.0],
    rate=[0.01],
    volatility=[0.3],
)


def test_flags_beat_environment_beat_defaults():
    config = parse_config(
        ["--port", "6000"],
        {"PRICING_PORT": "7000", "REDIS_URL": "redis://h:1/0", "PRICING_WORKERS": "3"},
    )
    assert (config.port, config.redis_url, config.workers) == (6000, "redis://h:1/0", 3)
    assert parse_config([], {}) == ServerConfig()


def test_batch_threads_default_to_the_cores_this_process_may_use():
    assert parse_config([], {}).batch_thread_count == min(usable_cores(), MAX_AUTO_BATCH_THREADS)
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))
    assert parse_config(["--batch-threads", "3"], {}).batch_thread_count == 3


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no limit
        ({"cpu.max": "150000 100000\n"}, 1),  # 1.5 CPUs: one whole core
        ({"cpu.max": "50000 100000\n"}, 1),  # less than one: still one thread
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),  # no cgroup files at all
    ],
)
def test_a_container_cpu_limit_bounds_the_usable_cores(tmp_path, files, limit):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    cores = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path) == (cores if limit is None else min(cores, limit))


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--workers", "0"], {}, "--workers"),
        (["--port", "x"], {}, "--port"),
        ([], {"PRICING_MAX_BATCH_ROWS": "many"}, "PRICING_MAX_BATCH_ROWS"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--batch-threads", "-1"], {}, "--batch-threads"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_flag(argv, environ, named):
    result = subprocess.run(
        [sys.executable, "-m", "server.main", *argv],
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert named in result.stderr


def test_sigterm_lets_in_flight_calls_finish_then_exits_cleanly():
    server = ServerProcess(MODELS, "--grace", "10")
    stub = server.stub()
    in_flight = [stub.PriceBatch.future(BIG, timeout=30) for _ in range(3)]
    time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    assert all(len(call.result().price) == 100_000 for call in in_flight)
    assert server.stop() == 0
    assert any("stopped" in line for line in server.log)


def test_sigterm_answers_the_calls_already_sent_before_it_stops():
    # gRPC's stop() alone cancelled 197 of these 200, which had not reached a handler yet.
    server = ServerProcess(MODELS, "--cache-size", "1")
    stub = server.stub()
    sent = [
        stub.PriceOption.future(
            pb.PriceOptionRequest(
                type=pb.CALL, spot=90 + 0.1 * i, strike=100, tau=0.5, rate=0.01, volatility=0.2
            ),
            timeout=30,
        )
        for i in range(200)
    ]
    server.process.send_signal(signal.SIGTERM)
    assert all(call.result().price > 0 for call in sent)
    assert server.stop() == 0
    assert any("answering calls that still arrive" in line for line in server.log)


def test_without_a_model_it_starts_unavailable_and_serves_once_one_is_promoted(tmp_path):
    server = ServerProcess(tmp_path / "models")
    try:
        with pytest.raises(grpc.RpcError) as raised:
            server.stub().PriceOption(
                pb.PriceOptionRequest(
                    type=pb.CALL, spot=100, strike=100, tau=1, rate=0.01, volatility=0.2
                )
            )
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        shutil.copytree(MODELS, tmp_path / "models", dirs_exist_ok=True)
        deadline = time.monotonic() + 10
        while "pricing_model_info{" not in server.metrics():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (
            server.stub()
            .PriceOption(
                pb.PriceOptionRequest(
                    type=pb.CALL, spot=100, strike=100, tau=1, rate=0.01, volatility=0.2
                )
            )
            .price
            > 0
        )
    finally:
        assert server.stop() == 0


def requests_total(metrics_text):
    return sum(
        float(v)
        for v in re.findall(
            r'^pricing_requests_total\{code="OK",method="PriceOption"\} (\S+)', metrics_text, re.M
        )
    )


def test_two_workers_share_one_port_and_both_serve():
    server = ServerProcess(MODELS, workers=2)
    try:
        # Connections, not calls, are balanced by the kernel: use many channels.
        stubs = [pricing_pb2_grpc.PricingServiceStub(server.channel()) for _ in range(16)]
        rng = np.random.default_rng(0)
        calls = [
            (
                stubs[i % 16],
                pb.PriceOptionRequest(
                    type=pb.PUT,
                    spot=100,
                    strike=float(rng.uniform(60, 180)),
                    tau=1,
                    rate=0.01,
                    volatility=0.2,
                ),
            )
            for i in range(320)
        ]
        with ThreadPoolExecutor(16) as pool:
            assert all(
                r.price >= 0 for r in pool.map(lambda c: c[0].PriceOption(c[1], timeout=10), calls)
            )
        served = [requests_total(server.metrics(worker)) for worker in (0, 1)]
        assert sum(served) == 320 and min(served) > 0
    finally:
        assert server.stop() == 0


def test_metrics_cover_requests_latency_batches_queue_cache_and_model():
    server = ServerProcess(MODELS)
    try:
        stub = server.stub()
        stub.PriceOption(
            pb.PriceOptionRequest(
                type=pb.CALL, spot=100, strike=100, tau=1, rate=0.01, volatility=0.2
            )
        )
        with pytest.raises(grpc.RpcError):
            stub.PriceOption(
                pb.PriceOptionRequest(
                    type=pb.CALL, spot=-1, strike=100, tau=1, rate=0.01, volatility=0.2
                )
            )
        text = server.metrics()
        for expected in (
            'pricing_requests_total{code="OK",method="PriceOption"} 1.0',
            'pricing_requests_total{code="INVALID_ARGUMENT",method="PriceOption"} 1.0',
            'pricing_request_seconds_count{method="PriceOption"} 2.0',
            "pricing_batch_rows_count 1.0",
            "pricing_model_run_seconds_count 1.0",
            "pricing_queue_rows 0.0",
            'pricing_cache_lookups_total{result="miss",tier="local"} 1.0',
            f'pricing_model_info{{kind="pinn",name="default",version="{PINN_VERSION}"}} 1.0',
        ):
            assert expected in text, expected
    finally:
        assert server.stop() == 0


def test_make_run_serves_the_committed_model_and_prints_an_example():
    port = free_port()
    repo = Path(__file__).resolve().parents[1]
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}", "METRICS_PORT=0"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        printed = []
        for line in make.stdout:
            printed.append(line)
            if "listening on" in line:
                break
        example = next(line for line in printed if "python -c" in line)
        result = subprocess.run(
            ["bash", "-c", example.strip()], cwd=repo, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert f'model_version: "{PINN_VERSION}"' in result.stdout and "price:" in result.stdout
    finally:
        os.killpg(make.pid, signal.SIGINT)
        make.communicate(timeout=30)


def test_a_port_in_use_is_a_clear_startup_error():
    server = ServerProcess(MODELS)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "server.main", "--host", "127.0.0.1", "--port", str(server.port),
             "--metrics-port", "0", "--models", str(MODELS)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"cannot listen (--port {server.port}" in second.stderr
    finally:
        assert server.stop() == 0
