"""Hot reload: a promoted version is swapped in under load; a bad one is refused."""

import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server_process import ServerProcess
from shared.api import pricing_pb2 as pb
from shared.artifact_store import CURRENT_FILE, MODEL_FILE, ArtifactStore

MODELS = Path(__file__).resolve().parents[1] / "models"
REQUEST = pb.PriceOptionRequest(
    type=pb.CALL, spot=100.0, strike=105.0, tau=0.5, rate=0.02, volatility=0.3
)
PROBE = pb.PriceOptionRequest(
    type=pb.CALL, spot=100.0, strike=99.0, tau=0.5, rate=0.02, volatility=0.3
)


@pytest.fixture
def models(tmp_path):
    shutil.copytree(MODELS, tmp_path / "models")
    return ArtifactStore(tmp_path / "models")


def publish_copy(store, **meta_changes):
    """A new version holding the committed model's files, promoted."""
    current = store.load("pinn", "default")
    written = store.write(
        "pinn", "default", dict(current.files), current.written_meta | meta_changes
    )
    store.promote("pinn", "default", written.version)
    return written.version


def wait_for_version(stub, version, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stub.PriceOption(PROBE, timeout=5).model_version == version:
            return True
        time.sleep(0.05)
    return False


def test_promotion_under_load_swaps_versions_with_zero_failed_calls(models):
    old_version = models.current_version("pinn", "default")
    server = ServerProcess(models.root)
    stub, stop, seen, failures = server.stub(), threading.Event(), set(), []

    def load(seed):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            request = pb.PriceOptionRequest(
                type=pb.PUT,
                spot=100.0,
                strike=float(rng.uniform(60, 180)),
                tau=1.0,
                rate=0.01,
                volatility=0.25,
            )
            try:
                seen.add(stub.PriceOption(request, timeout=5).model_version)
            except grpc.RpcError as error:
                failures.append(error.code())

    threads = [threading.Thread(target=load, args=(seed,)) for seed in range(8)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        new_version = publish_copy(models)
        assert wait_for_version(stub, new_version)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        assert server.stop() == 0
    assert failures == []
    assert seen == {old_version, new_version}


def test_a_new_version_never_serves_the_old_versions_cached_price(models):
    server = ServerProcess(models.root)
    try:
        stub = server.stub()
        assert [stub.PriceOption(REQUEST).cached for _ in range(2)] == [False, True]
        new_version = publish_copy(models)
        assert wait_for_version(stub, new_version)
        reply = stub.PriceOption(REQUEST)  # cached under the old version, never under the new one
        assert (reply.cached, reply.model_version) == (False, new_version)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("damage", ["not_onnx", "flipped_bit"])
def test_a_corrupt_promoted_version_is_refused_and_the_old_one_keeps_serving(models, damage):
    server = ServerProcess(models.root)
    try:
        stub = server.stub()
        before = stub.PriceOption(REQUEST)
        current = models.load("pinn", "default")
        if damage == "not_onnx":
            # Whole and checksummed, but no ONNX graph: onnxruntime must refuse it.
            written = models.write(
                "pinn",
                "default",
                {MODEL_FILE: b"\x08\x07 not a graph"},
                {"domain": current.meta["domain"]},
            )
            models.promote("pinn", "default", written.version)
        else:
            # A version damaged after it was written, pointed at by hand: the checksum must refuse it.
            written = models.write(
                "pinn", "default", dict(current.files), {"domain": current.meta["domain"]}
            )
            model_path = written.path / MODEL_FILE
            data = bytearray(model_path.read_bytes())
            data[len(data) // 2] ^= 0x01
            model_path.write_bytes(bytes(data))
            (models.root / "pinn" / "default" / CURRENT_FILE).write_text(f"{written.version}\n")
        deadline = time.monotonic() + 10
        while not any(f"refused pinn/default/{written.version}" in line for line in server.log):
            assert time.monotonic() < deadline, "".join(server.log)
            time.sleep(0.05)
        after = stub.PriceOption(REQUEST)
        assert after.model_version == before.model_version == current.version
        assert after.price == before.price
        health = health_pb2_grpc.HealthStub(server.channel()).Check(
            health_pb2.HealthCheckRequest(service="")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.stop() == 0
