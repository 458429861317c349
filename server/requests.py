"""From proto requests to the models' inputs, refusing anything they must not price or forecast.

Every refusal is INVALID_ARGUMENT with the field, the row and the allowed range: a value
outside the model's trained domain is refused, never extrapolated.
"""

from __future__ import annotations

import numpy as np

from shared.api import pricing_pb2
from shared.artifact_store import MODEL_NAME
from shared.validation import Allowed, Interval, OneOf, check_columns, check_values

OPTION_TYPES = OneOf((pricing_pb2.CALL, pricing_pb2.PUT), ("1 (CALL)", "2 (PUT)"))
# Any currency unit, but within what double-precision Greeks can express (gamma ~ 1 / spot).
PRICE_LEVEL = Interval(1e-8, 1e12)
# Request fields in the order of the model's input columns (is_put comes from `type`).
FIELDS = ("type", "spot", "strike", "tau", "rate", "volatility", "dividend_yield")
# A Forecast's longest history (800 kB); only the last closes its model needs are used.
MAX_CLOSES = 100_000


class BadRequest(ValueError):
    """A request whose shape is wrong: an empty, ragged or oversized batch, a symbol that is no
    ticker, too few or too many closes."""


def _allowed(domain: dict[str, Interval]) -> tuple[dict[str, Allowed], dict[str, Allowed]]:
    """The checks in order: plain validity first, then the model's domain."""
    valid: dict[str, Allowed] = {"type": OPTION_TYPES, "spot": PRICE_LEVEL, "strike": PRICE_LEVEL}
    in_domain: dict[str, Allowed] = {"spot/strike": domain["moneyness"]}
    in_domain |= {name: domain[name] for name in ("tau", "volatility", "rate", "dividend_yield")}
    return valid, in_domain


def option_row(
    request: pricing_pb2.PriceOptionRequest, domain: dict[str, Interval]
) -> tuple[float, ...]:
    """The model's input row of a PriceOption request, as plain floats (checked and keyed in
    plain Python: for one row that is ~10x faster than numpy)."""
    values = {name: getattr(request, name) for name in FIELDS}
    valid, in_domain = _allowed(domain)
    check_values(values, valid)
    check_values(values | {"spot/strike": values["spot"] / values["strike"]}, in_domain)
    is_put = 1.0 if values["type"] == pricing_pb2.PUT else 0.0
    return (is_put, *(values[name] for name in FIELDS[1:]))


def batch_rows(
    request: pricing_pb2.PriceBatchRequest, domain: dict[str, Interval], max_rows: int
) -> np.ndarray:
    """The rows [n, 7] of a column-wise PriceBatch request; columns of length 1 broadcast."""
    columns = {name: np.array(getattr(request, name), dtype=np.float64) for name in FIELDS}
    n = max(len(column) for column in columns.values())
    if n == 0:
        raise BadRequest("empty batch: give at least type, spot, strike, tau, rate and volatility")
    if n > max_rows:
        raise BadRequest(f"batch of {n} rows exceeds the maximum of {max_rows} rows")
    if len(columns["dividend_yield"]) == 0:
        columns["dividend_yield"] = np.zeros(1)
    for name, column in columns.items():
        if len(column) not in (1, n):
            need = "is empty" if len(column) == 0 else f"has {len(column)} values"
            raise BadRequest(f"column {name} {need}; it needs 1 value or {n} (the longest column)")
    valid, in_domain = _allowed(domain)
    check_columns(columns, valid)
    check_columns(columns | {"spot/strike": columns["spot"] / columns["strike"]}, in_domain)
    is_put = (columns["type"] == pricing_pb2.PUT).astype(np.float64)
    return np.stack(np.broadcast_arrays(is_put, *(columns[name] for name in FIELDS[1:])), axis=1)


def forecast_symbol(request: pricing_pb2.ForecastRequest) -> str:
    """The symbol of a Forecast request, if it can name a model at all."""
    symbol = request.symbol
    if not MODEL_NAME.fullmatch(symbol):
        what = "is empty" if not symbol else f"{symbol!r} is not a ticker"
        raise BadRequest(
            f"symbol {what}: give 1 to 64 of A-Z a-z 0-9 ^ . _ = -, starting with a letter, "
            "a digit or ^ (such as AAPL, BRK.B or ^GSPC)"
        )
    return symbol


def forecast_closes(request: pricing_pb2.ForecastRequest, closes_needed: int) -> np.ndarray:
    """The closes of a Forecast request: enough for its model, not too many, each a price."""
    n = len(request.closes)
    if n > MAX_CLOSES:
        raise BadRequest(
            f"closes has {n:,} values; at most {MAX_CLOSES:,} are accepted "
            f"(only the last {closes_needed} are used)"
        )
    if n < closes_needed:
        raise BadRequest(
            f"closes has {n} values; the {request.symbol} model needs at least {closes_needed} "
            "daily closes, oldest first"
        )
    closes = np.array(request.closes, dtype=np.float64)
    check_columns({"closes": closes}, {"closes": PRICE_LEVEL})
    return closes
