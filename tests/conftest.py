"""Fixtures shared by the test suite."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_process import RedisProcess
from server_process import ServerProcess
from shared.api import pricing_pb2_grpc

COMMITTED_MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real redis-server started for this test session and stopped after it."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A pricing-server on the committed models, shared by the tests of one module."""
    process = ServerProcess(COMMITTED_MODELS)
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> pricing_pb2_grpc.PricingServiceStub:
    return server.stub()
