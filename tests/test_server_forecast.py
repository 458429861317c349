"""Forecast through a real server: the committed forecasters, validation, hot reload per symbol."""

import copy
import re
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.forecaster import LoadedForecaster, UnforecastableCloses
from server_process import ServerProcess
from shared.api import pricing_pb2 as pb
from shared.artifact_store import CURRENT_FILE, MODEL_FILE, ArtifactStore
from shared.features import Standardizer, causal_features
from shared.forecast_scale import ANCHOR_COLUMN, decode
from shared.onnx_runtime import onnx_session
from trainer.mamba.sample_data import sample_history

MODELS = Path(__file__).resolve().parents[1] / "models"
PINN_VERSION = ArtifactStore(MODELS).current_version("pinn", "default")
# The adjusted daily closes the demo models were trained on (bokeh-sampledata, 2000-2013).
CLOSES = {symbol: sample_history(symbol).close for symbol in ("AAPL", "MSFT")}
VERSIONS = {symbol: ArtifactStore(MODELS).current_version("mamba", symbol) for symbol in CLOSES}
NEEDED = 130  # meta.json's features.closes_needed of the demo models: 66 + a window of 64


def direct_forecast(artifact, closes):
    """The forecast from the ONNX file and the shared code alone, over the whole history given."""
    meta = artifact.meta
    features = causal_features(closes)
    scaler = Standardizer.from_meta(meta["features"]["standardizer"])
    x = scaler.transform(features[-meta["window"] :]).astype(np.float32)[None]
    [y] = onnx_session(artifact.model).run(["y"], {"x": x})
    log_return, volatility = decode(
        y.astype(np.float64), features[-1:, ANCHOR_COLUMN], tuple(meta["horizons"])
    )
    return log_return[0], volatility[0]


def forecast(stub, symbol, closes):
    return stub.Forecast(pb.ForecastRequest(symbol=symbol, closes=list(closes)), timeout=5)


def assert_matches(reply, artifact, closes):
    log_return, volatility = direct_forecast(artifact, closes)
    assert list(reply.horizons) == [1, 5, 10, 30]
    assert reply.model_version == artifact.version
    assert np.isfinite(reply.log_return).all() and np.isfinite(reply.volatility).all()
    assert min(reply.volatility) > 0
    np.testing.assert_allclose(reply.log_return, log_return, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(reply.volatility, volatility, rtol=1e-6)


@pytest.mark.parametrize("symbol", ["AAPL", "MSFT"])
@pytest.mark.parametrize("day", [NEEDED, 1500, len(CLOSES["AAPL"])])
def test_forecast_is_the_onnx_model_on_the_trainers_features(stub, symbol, day):
    # The server is sent only the closes it needs; the reference sees the whole history.
    closes = CLOSES[symbol][:day]
    reply = forecast(stub, symbol, closes[-NEEDED:])
    assert_matches(reply, ArtifactStore(MODELS).load("mamba", symbol, VERSIONS[symbol]), closes)


def test_up_to_100000_closes_are_accepted_and_only_the_last_needed_are_used(stub):
    last = CLOSES["AAPL"][-NEEDED:]
    longest = np.concatenate([np.full(100_000 - NEEDED, 1.0), last])
    assert forecast(stub, "AAPL", longest) == forecast(stub, "AAPL", last)


def _with(index, value):
    closes = CLOSES["AAPL"][:200].copy()
    closes[index] = value
    return closes


RANGE = "the allowed range [1e-08, 1e+12]"


@pytest.mark.parametrize(
    ("symbol", "closes", "message"),
    [
        ("", CLOSES["AAPL"], "symbol is empty: give 1 to 64 of A-Z a-z 0-9 ^ . _ = -"),
        ("../pinn", CLOSES["AAPL"], "symbol '../pinn' is not a ticker"),
        ("AAPL MSFT", CLOSES["AAPL"], "symbol 'AAPL MSFT' is not a ticker"),
        ("A" * 65, CLOSES["AAPL"], "is not a ticker: give 1 to 64"),
        ("AAPL", [], "closes has 0 values; the AAPL model needs at least 130 daily closes"),
        ("AAPL", CLOSES["AAPL"][-129:], "closes has 129 values; the AAPL model needs at least 130"),
        ("AAPL", [1.0] * 100_001, "closes has 100,001 values; at most 100,000 are accepted"),
        ("AAPL", _with(5, np.nan), f"closes[5] = nan is outside {RANGE}"),
        ("AAPL", _with(7, np.inf), f"closes[7] = inf is outside {RANGE}"),
        ("AAPL", _with(0, 0.0), f"closes[0] = 0.0 is outside {RANGE}"),
        ("AAPL", _with(199, -12.5), f"closes[199] = -12.5 is outside {RANGE}"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_field_and_what_is_needed(
    stub, symbol, closes, message
):
    with pytest.raises(grpc.RpcError) as raised:
        forecast(stub, symbol, closes)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_an_unknown_symbol_is_not_found_naming_the_served_ones_and_how_to_train(stub):
    with pytest.raises(grpc.RpcError) as raised:
        forecast(stub, "IBM", CLOSES["AAPL"])
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == (
        "no forecast model for symbol 'IBM' (served: AAPL, MSFT); "
        "train one with `trainer train --model mamba --symbols IBM --data DIR`"
    )


def test_metrics_count_forecasts_and_list_every_model_version(server, stub):
    forecast(stub, "AAPL", CLOSES["AAPL"])
    with pytest.raises(grpc.RpcError):
        forecast(stub, "", CLOSES["AAPL"])
    text = server.metrics()
    for pattern in (
        r'pricing_requests_total\{code="OK",method="Forecast"\} [1-9]',
        r'pricing_requests_total\{code="INVALID_ARGUMENT",method="Forecast"\} [1-9]',
        r'pricing_request_seconds_count\{method="Forecast"\} [1-9]',
        rf'pricing_model_info\{{kind="pinn",name="default",version="{PINN_VERSION}"\}} 1.0',
        *(
            rf'pricing_model_info\{{kind="mamba",name="{symbol}",version="{version}"\}} 1.0'
            for symbol, version in VERSIONS.items()
        ),
    ):
        assert re.search(pattern, text), pattern


def test_a_non_finite_forecast_is_refused_never_returned():
    class NaNSession:
        def run(self, names, feeds):
            return [np.full((1, 8), np.nan, np.float32)]

    artifact = ArtifactStore(MODELS).load("mamba", "AAPL")
    model = LoadedForecaster(
        "AAPL", artifact.version, NaNSession(), 64, (1, 5, 10, 30), NEEDED,
        Standardizer.from_meta(artifact.meta["features"]["standardizer"]),
    )  # fmt: skip
    refusal = f"AAPL model {artifact.version} gives a non-finite forecast"
    with pytest.raises(UnforecastableCloses, match=refusal):
        model.forecast(CLOSES["AAPL"])


@pytest.fixture
def store(tmp_path):
    """A models folder with the PINN and AAPL's forecaster only."""
    shutil.copytree(MODELS / "pinn", tmp_path / "models" / "pinn")
    shutil.copytree(MODELS / "mamba" / "AAPL", tmp_path / "models" / "mamba" / "AAPL")
    return ArtifactStore(tmp_path / "models")


def write_version(store, symbol, files=None, **changes):
    """A new version of `symbol` holding the committed AAPL forecaster's files and meta, with
    `changes` made to the meta (`features__lookback=22` sets meta["features"]["lookback"])."""
    source = ArtifactStore(MODELS).load("mamba", "AAPL", VERSIONS["AAPL"])
    meta = copy.deepcopy(source.written_meta)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = meta
        for key in parents:
            node = node[key]
        node[leaf] = value
    return store.write("mamba", symbol, files or dict(source.files), meta)


def publish(store, symbol, files=None, **changes):
    written = write_version(store, symbol, files, **changes)
    store.promote("mamba", symbol, written.version)
    return written


def wait_until(condition, explain, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, explain()
        time.sleep(0.05)


def wait_for_log(server, *parts):
    """Until the server logs a line holding every one of `parts`."""
    wait_until(
        lambda: any(all(part in line for part in parts) for line in server.log),
        lambda: f"no log line with {parts}:\n{''.join(server.log)}",
    )


def test_new_versions_swap_in_under_load_and_new_symbols_join(store):
    server = ServerProcess(store.root)
    stub, stop, seen, failures = server.stub(), threading.Event(), set(), []
    closes = CLOSES["AAPL"][-NEEDED:]

    def load():
        while not stop.is_set():
            try:
                seen.add(forecast(stub, "AAPL", closes).model_version)
            except grpc.RpcError as error:
                failures.append(error.code())

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        first = forecast(stub, "AAPL", closes)
        assert first.model_version == VERSIONS["AAPL"]
        for thread in threads:
            thread.start()
        # Same graph, another scaler: different numbers, so the test sees which version ran.
        scaler = store.load("mamba", "AAPL").meta["features"]["standardizer"]
        shifted = {"mean": [m * 1.01 for m in scaler["mean"]], "std": scaler["std"]}
        new = publish(store, "AAPL", features__standardizer=shifted)
        wait_until(
            lambda: new.version in seen, lambda: f"{new.version} never served: {seen}, {failures}"
        )
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == [] and seen == {VERSIONS["AAPL"], new.version}
        after = forecast(stub, "AAPL", closes)
        assert_matches(after, new, closes)
        assert after.volatility != first.volatility

        with pytest.raises(grpc.RpcError) as raised:
            forecast(stub, "IBM", CLOSES["AAPL"])
        assert "(served: AAPL)" in raised.value.details()
        ibm = publish(store, "IBM")
        wait_for_log(server, "serving mamba/IBM/v0001")
        assert_matches(forecast(stub, "IBM", closes), ibm, closes)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        assert server.stop() == 0


def damage(store, written):
    """Flip a bit of a stored version's model.onnx and point CURRENT at it, as no writer would."""
    data = bytearray((written.path / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (written.path / MODEL_FILE).write_bytes(bytes(data))
    (store.root / "mamba" / written.name / CURRENT_FILE).write_text(f"{written.version}\n")
    return written


def test_bad_versions_are_refused_and_the_old_one_keeps_serving(store):
    server = ServerProcess(store.root)
    closes = CLOSES["AAPL"][-NEEDED:]
    try:
        stub = server.stub()
        before = forecast(stub, "AAPL", closes)
        scaler = store.load("mamba", "AAPL").meta["features"]["standardizer"]
        # Each bad version, written and promoted, and the reason it must be refused for.
        bad = [
            # Whole and checksummed, but no ONNX graph.
            (lambda: publish(store, "AAPL", {MODEL_FILE: b"\x08\x07 not a graph"}),
             "onnxruntime cannot open model.onnx"),
            # Trained on other features than the server computes.
            (lambda: publish(store, "AAPL", features__lookback=22, features__closes_needed=86),
             "trained on features"),
            # A window the graph does not take.
            (lambda: publish(store, "AAPL", window=32, features__closes_needed=98),
             "is not the forecaster contract"),
            # Opens, but its warm-up forecast is not finite.
            (lambda: publish(store, "AAPL", features__standardizer={**scaler, "std": [1e-30] * 5}),
             "warm-up: closes: the AAPL model"),
            # Damaged after it was written, and pointed at by hand.
            (lambda: damage(store, write_version(store, "AAPL")), "but meta.json records"),
        ]  # fmt: skip
        for write, reason in bad:
            wait_for_log(
                server,
                f"refused mamba/AAPL/{write().version}, still serving {VERSIONS['AAPL']}: ",
                reason,
            )
        assert forecast(stub, "AAPL", closes) == before
        assert before.model_version == VERSIONS["AAPL"]
        health = health_pb2_grpc.HealthStub(server.channel()).Check(
            health_pb2.HealthCheckRequest(service="")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.stop() == 0


def test_a_server_without_forecasters_prices_and_says_none_are_served(tmp_path):
    shutil.copytree(MODELS / "pinn", tmp_path / "pinn")  # no mamba folder at all
    server = ServerProcess(tmp_path)
    try:
        stub = server.stub()
        reply = stub.PriceOption(
            pb.PriceOptionRequest(
                type=pb.CALL, spot=100, strike=100, tau=1, rate=0.01, volatility=0.2
            )
        )
        assert reply.model_version == PINN_VERSION
        with pytest.raises(grpc.RpcError) as raised:
            forecast(stub, "AAPL", CLOSES["AAPL"])
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert "(served: none)" in raised.value.details()
    finally:
        assert server.stop() == 0
