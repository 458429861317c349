"""The committed gRPC stubs are what `make proto` generates, and they describe the contract."""

import subprocess
import sys
from pathlib import Path

from shared.api import pricing_pb2, pricing_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
STUBS = REPO / "shared" / "api"


def test_committed_stubs_match_regenerated(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.name for p in tmp_path.iterdir())
    assert generated == ["pricing_pb2.py", "pricing_pb2.pyi", "pricing_pb2_grpc.py"]
    for name in generated:
        assert (STUBS / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"shared/api/{name} is stale: run `make proto` and commit the result"
        )


def field_numbers(message) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_contract_field_numbers():
    """A guard against renumbering: these numbers are the wire format clients depend on."""
    assert pricing_pb2.DESCRIPTOR.package == "pricing.v1"
    assert pricing_pb2.OptionType.items() == [
        ("OPTION_TYPE_UNSPECIFIED", 0),
        ("CALL", 1),
        ("PUT", 2),
    ]
    option = ["type", "spot", "strike", "tau", "rate", "volatility", "dividend_yield"]
    assert field_numbers(pricing_pb2.PriceOptionRequest) == {n: i for i, n in enumerate(option, 1)}
    assert field_numbers(pricing_pb2.PriceBatchRequest) == {n: i for i, n in enumerate(option, 1)}
    greeks = ["delta", "gamma", "theta", "vega", "rho"]
    assert field_numbers(pricing_pb2.Greeks) == {n: i for i, n in enumerate(greeks, 1)}
    assert field_numbers(pricing_pb2.PriceOptionResponse) == {
        "price": 1, "greeks": 2, "model_version": 3, "cached": 4,
    }  # fmt: skip
    batch = ["price", *greeks, "model_version", "cached_count"]
    assert field_numbers(pricing_pb2.PriceBatchResponse) == {n: i for i, n in enumerate(batch, 1)}
    assert field_numbers(pricing_pb2.ForecastRequest) == {"symbol": 1, "closes": 2}
    assert field_numbers(pricing_pb2.ForecastResponse) == {
        "horizons": 1, "log_return": 2, "volatility": 3, "model_version": 4,
    }  # fmt: skip
    service = pricing_pb2.DESCRIPTOR.services_by_name["PricingService"]
    assert [m.name for m in service.methods] == ["PriceOption", "PriceBatch", "Forecast"]
    assert hasattr(pricing_pb2_grpc, "PricingServiceServicer")


def test_columns_are_packed_and_typed():
    request = pricing_pb2.PriceBatchRequest(spot=[100.0, 101.0], type=[pricing_pb2.CALL])
    parsed = pricing_pb2.PriceBatchRequest.FromString(request.SerializeToString())
    assert list(parsed.spot) == [100.0, 101.0]
    assert list(parsed.type) == [pricing_pb2.CALL]
    response = pricing_pb2.PriceBatchResponse(cached_count=2**32 - 1)
    assert (
        pricing_pb2.PriceBatchResponse.FromString(response.SerializeToString()).cached_count
        == 2**32 - 1
    )
