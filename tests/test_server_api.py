"""pricing-server's API through a real server: contract, accuracy, validation, health."""

import math
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.api import pricing_pb2 as pb
from shared.artifact_store import ArtifactStore
from shared.black_scholes import black_scholes
from shared.onnx_runtime import onnx_session
from shared.pinn_graph import run_model

MODELS = Path(__file__).resolve().parents[1] / "models"
ATM = {
    "spot": 100.0,
    "strike": 100.0,
    "tau": 1.0,
    "rate": 0.05,
    "volatility": 0.2,
    "dividend_yield": 0.01,
}


def test_health_is_serving_and_reflection_lists_the_service(server):
    channel = server.channel()
    for service in ("", "pricing.v1.PricingService"):
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service)
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [reply] = list(
        reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]))
    )
    assert "pricing.v1.PricingService" in {s.name for s in reply.list_services_response.service}


def test_price_option_is_the_committed_model_and_close_to_black_scholes(stub):
    for option_type, is_put in ((pb.CALL, 0.0), (pb.PUT, 1.0)):
        reply = stub.PriceOption(pb.PriceOptionRequest(type=option_type, **ATM))
        assert reply.model_version == ArtifactStore(MODELS).current_version("pinn", "default")
        ref = black_scholes(is_put, *ATM.values())
        assert abs(reply.price - ref.price[0]) < 5e-5 * ATM["strike"]
        assert abs(reply.greeks.delta - ref.delta[0]) < 1e-3
        assert abs(reply.greeks.vega - ref.vega[0]) / ATM["spot"] < 1e-3


def test_batch_matches_single_calls_bit_for_bit(stub):
    strikes = [60.0, 85.0, 100.0, 120.5, 190.0]
    batch = stub.PriceBatch(
        pb.PriceBatchRequest(
            type=[pb.CALL, pb.PUT, pb.CALL, pb.PUT, pb.CALL], spot=[100.0], strike=strikes,
            tau=[0.25, 0.5, 1.0, 2.0, 2.9], rate=[0.03], volatility=[0.35],
        )
    )  # fmt: skip
    assert batch.cached_count == 0 and len(batch.price) == 5
    for i, (option_type, tau) in enumerate(
        zip([1, 2, 1, 2, 1], [0.25, 0.5, 1.0, 2.0, 2.9], strict=True)
    ):
        request = pb.PriceOptionRequest(
            type=option_type, spot=100.0, strike=strikes[i], tau=tau, rate=0.03, volatility=0.35
        )
        single = stub.PriceOption(request)
        assert (single.price, single.greeks.delta, single.greeks.rho) == (
            batch.price[i],
            batch.delta[i],
            batch.rho[i],
        )


def test_answers_equal_the_onnx_graph_run_directly(stub):
    x = np.array([[0.0, 123.0, 100.0, 0.75, 0.02, 0.45, 0.03]])
    direct = run_model(onnx_session(ArtifactStore(MODELS).load("pinn", "default").model), x)
    reply = stub.PriceOption(
        pb.PriceOptionRequest(
            type=pb.CALL,
            spot=123.0,
            strike=100.0,
            tau=0.75,
            rate=0.02,
            volatility=0.45,
            dividend_yield=0.03,
        )
    )
    assert reply.price == pytest.approx(direct["price"][0], rel=1e-6)
    assert reply.greeks.gamma == pytest.approx(direct["gamma"][0], rel=1e-5)


def test_a_repeated_call_is_cached_with_identical_numbers_and_prices_the_put_too(stub):
    request = pb.PriceOptionRequest(
        type=pb.CALL, spot=101.25, strike=97.0, tau=0.4, rate=0.01, volatility=0.3
    )
    first, second = stub.PriceOption(request), stub.PriceOption(request)
    assert (first.cached, second.cached) == (False, True)
    assert (first.price, first.greeks) == (second.price, second.greeks)
    put = stub.PriceOption(
        pb.PriceOptionRequest(
            type=pb.PUT, spot=101.25, strike=97.0, tau=0.4, rate=0.01, volatility=0.3
        )
    )
    assert put.cached  # the call's inference priced the put as well
    parity = first.price - put.price - (101.25 - 97.0 * math.exp(-0.01 * 0.4))
    assert abs(parity) < 1e-4


BAD_OPTIONS = [
    ({"type": pb.OPTION_TYPE_UNSPECIFIED}, "type[0]", "1 (CALL), 2 (PUT)"),
    ({"type": 7}, "type[0]", "1 (CALL), 2 (PUT)"),
    ({"spot": float("nan")}, "spot[0]", "[1e-08, 1e+12]"),
    ({"spot": 0.0}, "spot[0]", "[1e-08, 1e+12]"),
    ({"strike": -5.0}, "strike[0]", "[1e-08, 1e+12]"),
    ({"strike": float("inf")}, "strike[0]", "[1e-08, 1e+12]"),
    ({"tau": 0.0}, "tau[0]", "[0.00273973, 3]"),
    ({"tau": 3.5}, "tau[0]", ", 3]"),
    ({"volatility": -0.2}, "volatility[0]", "[0.05, 1]"),
    ({"volatility": 1.5}, "volatility[0]", "[0.05, 1]"),
    ({"rate": float("-inf")}, "rate[0]", "[-0.01, 0.1]"),
    ({"dividend_yield": 0.2}, "dividend_yield[0]", "[0, 0.05]"),
    ({"spot": 250.0}, "spot/strike[0]", "[0.5, 2]"),
]


@pytest.mark.parametrize(("change", "field", "allowed"), BAD_OPTIONS)
def test_bad_price_option_is_invalid_argument_naming_field_and_range(stub, change, field, allowed):
    request = pb.PriceOptionRequest(**({"type": pb.CALL} | ATM | change))
    with pytest.raises(grpc.RpcError) as raised:
        stub.PriceOption(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in raised.value.details() and allowed in raised.value.details()


BATCH = {
    "type": [1, 2, 1],
    "spot": [100.0],
    "strike": [90.0, 100.0, 110.0],
    "tau": [0.5],
    "rate": [0.02],
    "volatility": [0.25],
}
BAD_BATCHES = [
    ({"strike": [90.0, 100.0]}, "column strike has 2 values; it needs 1 value or 3"),
    ({"tau": []}, "column tau is empty"),
    ({key: [] for key in BATCH}, "empty batch"),
    ({"strike": [90.0, -1.0, 110.0]}, "strike[1] = -1.0"),
    (
        {"volatility": [0.25, 0.25, 7.0]},
        "volatility[2] = 7.0 is outside the allowed range [0.05, 1]",
    ),
    ({"type": [1, 0, 2]}, "type[1] = 0.0"),
    ({"strike": [90.0, 100.0, 1000.0]}, "spot/strike[2]"),
    (
        {"strike": [90.0] * 100_001, "type": [1]},
        "batch of 100001 rows exceeds the maximum of 100000 rows",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_BATCHES)
def test_bad_price_batch_is_invalid_argument_naming_field_and_row(stub, change, message):
    with pytest.raises(grpc.RpcError) as raised:
        stub.PriceBatch(pb.PriceBatchRequest(**(BATCH | change)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


floats = st.floats(allow_nan=True, allow_infinity=True) | st.floats(min_value=-0.1, max_value=250.0)


def assert_valid_or_invalid_argument(call):
    try:
        reply = call()
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        return None
    return reply


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    option_type=st.integers(min_value=0, max_value=3),
    spot=floats, strike=floats, tau=floats, rate=floats, volatility=floats, dividend_yield=floats,
)  # fmt: skip
def test_any_floats_give_a_finite_quote_or_invalid_argument(stub, option_type, **inputs):
    request = pb.PriceOptionRequest(type=option_type, **inputs)
    reply = assert_valid_or_invalid_argument(lambda: stub.PriceOption(request, timeout=10))
    if reply is not None:
        values = [
            reply.price,
            reply.greeks.delta,
            reply.greeks.gamma,
            reply.greeks.theta,
            reply.greeks.vega,
            reply.greeks.rho,
        ]
        assert all(math.isfinite(v) for v in values) and reply.price >= 0
    batch = pb.PriceBatchRequest(type=[option_type, 1], spot=[inputs["spot"]], strike=[inputs["strike"], 100.0],
                                 tau=[inputs["tau"]], rate=[inputs["rate"]], volatility=[inputs["volatility"]],
                                 dividend_yield=[inputs["dividend_yield"]])  # fmt: skip
    reply = assert_valid_or_invalid_argument(lambda: stub.PriceBatch(batch, timeout=10))
    if reply is not None:
        assert len(reply.price) == 2
        assert all(
            math.isfinite(v)
            for column in (
                reply.price,
                reply.delta,
                reply.gamma,
                reply.theta,
                reply.vega,
                reply.rho,
            )
            for v in column
        )


@pytest.mark.parametrize("level", [1e-7, 1.0, 1e11])
def test_prices_scale_with_the_price_level(stub, level):
    """Homogeneity in (spot, strike): any currency unit, no float32 overflow (hypothesis found 1.8e19)."""
    base = stub.PriceOption(
        pb.PriceOptionRequest(
            type=pb.CALL, spot=110.0, strike=100.0, tau=0.7, rate=0.02, volatility=0.3
        )
    )
    scaled = stub.PriceOption(
        pb.PriceOptionRequest(
            type=pb.CALL, spot=1.1 * level, strike=level, tau=0.7, rate=0.02, volatility=0.3
        )
    )
    factor = level / 100.0
    assert scaled.price == pytest.approx(base.price * factor, rel=1e-12)
    assert scaled.greeks.delta == pytest.approx(base.greeks.delta, rel=1e-12)
    assert scaled.greeks.gamma == pytest.approx(base.greeks.gamma / factor, rel=1e-12)
    assert scaled.greeks.vega == pytest.approx(base.greeks.vega * factor, rel=1e-12)
