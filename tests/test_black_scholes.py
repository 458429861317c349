"""shared.black_scholes against QuantLib, parity, and the limits tau -> 0 and sigma -> 0."""

import warnings

import numpy as np
import pytest
import QuantLib as ql  # noqa: N813
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.black_scholes import black_scholes
from shared.validation import InvalidInputError

N_POINTS = 10_000


def random_points(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    strike = rng.uniform(1.0, 1000.0, n)
    return {
        "is_put": rng.integers(0, 2, n).astype(float),
        "spot": strike * np.exp(rng.uniform(np.log(0.2), np.log(5.0), n)),
        "strike": strike,
        "tau": rng.uniform(1 / 365, 5.0, n),
        "rate": rng.uniform(-0.05, 0.2, n),
        "volatility": rng.uniform(0.01, 2.0, n),
        "dividend_yield": rng.uniform(0.0, 0.1, n),
    }


def quantlib_quote(is_put, spot, strike, tau, rate, volatility, dividend_yield):
    """Price and Greeks from QuantLib's BlackCalculator, in the API's conventions."""
    option_type = ql.Option.Put if is_put else ql.Option.Call
    forward = spot * np.exp((rate - dividend_yield) * tau)
    calc = ql.BlackCalculator(
        ql.PlainVanillaPayoff(option_type, strike),
        forward,
        volatility * np.sqrt(tau),
        np.exp(-rate * tau),
    )
    return (
        calc.value(),
        calc.delta(spot),
        calc.gamma(spot),
        calc.theta(spot, tau),
        calc.vega(tau),
        calc.rho(tau),
    )


def test_matches_quantlib_on_random_points():
    points = random_points(np.random.default_rng(20261126), N_POINTS)
    ours = black_scholes(**points)
    rows = zip(*(points[k] for k in points), strict=True)
    theirs = np.array([quantlib_quote(*row) for row in rows]).T
    spot, strike = points["spot"], points["strike"]
    # Each Greek made dimensionless by the price scale its units ask for.
    scaled = {
        "price": (ours.price, theirs[0], strike, 1e-10),
        "delta": (ours.delta, theirs[1], 1.0, 1e-8),
        "gamma": (ours.gamma, theirs[2], 1.0 / spot, 1e-8),
        "theta": (ours.theta, theirs[3], strike, 1e-8),
        "vega": (ours.vega, theirs[4], strike, 1e-8),
        "rho": (ours.rho, theirs[5], strike, 1e-8),
    }
    for name, (mine, reference, scale, tolerance) in scaled.items():
        error = np.abs(mine - reference) / scale
        worst = int(np.argmax(error))
        assert error[worst] <= tolerance, (
            name,
            error[worst],
            {k: v[worst] for k, v in points.items()},
        )


def test_put_call_parity():
    points = random_points(np.random.default_rng(7), N_POINTS)
    call = black_scholes(**{**points, "is_put": 0.0})
    put = black_scholes(**{**points, "is_put": 1.0})
    s, k, t = points["spot"], points["strike"], points["tau"]
    forward_value = s * np.exp(-points["dividend_yield"] * t) - k * np.exp(-points["rate"] * t)
    np.testing.assert_allclose((call.price - put.price) / k, forward_value / k, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        call.delta - put.delta, np.exp(-points["dividend_yield"] * t), rtol=0, atol=1e-14
    )
    np.testing.assert_array_equal(call.gamma, put.gamma)
    np.testing.assert_array_equal(call.vega, put.vega)


def test_known_textbook_values():
    # Hull, Options, Futures and Other Derivatives: S=K=100, T=1, r=5%, sigma=20%.
    quote = black_scholes([0, 1], 100.0, 100.0, 1.0, 0.05, 0.2)
    np.testing.assert_allclose(quote.price, [10.450583572185565, 5.573526022256971], rtol=1e-13)
    np.testing.assert_allclose(quote.delta, [0.636830651175619, -0.363169348824381], rtol=1e-12)


def quiet_quote(**inputs):
    """black_scholes with overflow, division by zero and NaN raised as errors (underflow to 0 is fine)."""
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        quote = black_scholes(**inputs)
    for name in ("price", "delta", "gamma", "theta", "vega", "rho"):
        assert np.isfinite(getattr(quote, name)).all(), name
    return quote


def limit_points(tau, volatility):
    rng = np.random.default_rng(3)
    n = 2000
    points = random_points(rng, n)
    # Keep the forward away from the strike: at the money the limit is a kink.
    log_moneyness = rng.choice([-1, 1], n) * rng.uniform(0.02, 1.0, n)
    points["spot"] = points["strike"] * np.exp(log_moneyness)
    return {**points, "tau": tau, "volatility": volatility}


@pytest.mark.parametrize("tau", [1e-8, 1e-12, 1e-200])
def test_expiry_limit_is_intrinsic_value(tau):
    points = limit_points(tau, volatility=0.3)
    quote = quiet_quote(**points)
    s, k, put = points["spot"], points["strike"], points["is_put"]
    intrinsic = np.where(put == 1, np.maximum(k - s, 0), np.maximum(s - k, 0))
    np.testing.assert_allclose(quote.price / k, intrinsic / k, rtol=0, atol=1e-6)
    in_the_money = intrinsic > 0
    np.testing.assert_allclose(np.abs(quote.delta), in_the_money.astype(float), atol=1e-6)
    assert (quote.gamma * s < 1e-6).all()
    assert (quote.vega / k < 1e-6).all()


@pytest.mark.parametrize("volatility", [1e-8, 1e-14, 1e-300])
def test_zero_volatility_limit_is_discounted_intrinsic_value(volatility):
    points = limit_points(tau=1.0, volatility=volatility)
    quote = quiet_quote(**points)
    s, k, t, put = points["spot"], points["strike"], points["tau"], points["is_put"]
    forward_value = s * np.exp(-points["dividend_yield"] * t) - k * np.exp(-points["rate"] * t)
    intrinsic = np.maximum(np.where(put == 1, -forward_value, forward_value), 0)
    np.testing.assert_allclose(quote.price / k, intrinsic / k, rtol=0, atol=1e-12)
    assert (quote.gamma * s < 1e-6).all()


# Extreme but meaningful: rates of +-50% over 100 years still have finite discount factors.
tiny_to = lambda high: st.floats(min_value=1e-300, max_value=high)  # noqa: E731
small = st.floats(min_value=-0.5, max_value=0.5)


@settings(deadline=None)  # shared CI machines are noisy; the property, not speed, is tested
@given(
    is_put=st.sampled_from([0.0, 1.0]),
    spot=st.floats(min_value=1e-6, max_value=1e9),
    strike=st.floats(min_value=1e-6, max_value=1e9),
    tau=tiny_to(100.0),
    rate=small,
    volatility=tiny_to(100.0),
    dividend_yield=small,
)
def test_any_valid_input_gives_finite_numbers_without_warnings(**inputs):
    quiet_quote(**inputs)


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("spot", float("nan")),
        ("spot", -1.0),
        ("strike", 0.0),
        ("tau", float("inf")),
        ("tau", 0.0),
        ("volatility", -0.2),
        ("rate", float("nan")),
        ("dividend_yield", float("-inf")),
        ("is_put", 0.5),
    ],
)
def test_bad_input_names_field_and_row(field, bad):
    points = random_points(np.random.default_rng(1), 10)
    points[field][[4, 7]] = bad
    with pytest.raises(InvalidInputError) as raised:
        black_scholes(**points)
    error = raised.value
    assert (error.field, error.row, error.bad_rows) == (field, 4, 2)
    assert str(error).startswith(f"{field}[4] = ")
    assert "allowed" in str(error)


def test_inputs_broadcast_like_the_batch_api():
    quote = black_scholes(
        is_put=[0, 1, 0],
        spot=100.0,
        strike=[90.0, 100.0, 110.0],
        tau=0.5,
        rate=0.01,
        volatility=0.25,
    )
    assert quote.price.shape == (3,)
    single = black_scholes(1, 100.0, 100.0, 0.5, 0.01, 0.25)
    assert single.price[0] == quote.price[1]
