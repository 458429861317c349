"""The PINN's forward-mode derivatives and Greeks equal TensorFlow's reverse-mode autodiff."""

import numpy as np
import pytest
import tensorflow as tf

from shared.pinn_graph import COLUMNS
from trainer.pinn.domain import DOMAIN, sample_inputs
from trainer.pinn.network import (
    TIME_VALUE,
    V_K,
    V_KK,
    V_S,
    NetworkShape,
    V,
    build_correction,
    price_and_greeks,
    value_jet,
)


def value(k, s, correction):
    """value_jet of 1-D tensors."""
    return value_jet(k[:, None], s[:, None], correction)


@pytest.fixture(scope="module")
def correction():
    # Untrained but not trivial: random weights scaled up so g and its slopes are O(1).
    model = build_correction(NetworkShape(width=16, depth=2), "float64", seed=3)
    model.set_weights([3.0 * w for w in model.get_weights()])
    return model


def test_jet_matches_gradient_tape(correction):
    rng = np.random.default_rng(0)
    s_low, s_high = DOMAIN.s_range
    k = tf.constant(rng.uniform(-DOMAIN.k_max, DOMAIN.k_max, 2000))
    s = tf.constant(rng.uniform(s_low * 10, s_high, 2000))
    with tf.GradientTape(persistent=True) as outer:
        outer.watch([k, s])
        with tf.GradientTape(persistent=True) as inner:
            inner.watch([k, s])
            jet = value(k, s, correction)
            v = jet[:, V]
        v_k = inner.gradient(v, k)
        v_s = inner.gradient(v, s)
    v_kk = outer.gradient(v_k, k)
    for name, column, tape in [("v_k", V_K, v_k), ("v_s", V_S, v_s), ("v_kk", V_KK, v_kk)]:
        np.testing.assert_allclose(
            jet[:, column].numpy(), tape.numpy(), rtol=1e-9, atol=1e-9, err_msg=name
        )
    # The time value is v - |h| up to the erfc fit's relative 1.2e-7 of |h| erfc (<= |h|).
    abs_h = np.abs(np.sinh(k.numpy() / 2))
    assert np.all(np.abs(jet[:, TIME_VALUE] - (jet[:, V] - abs_h)) <= 1.3e-7 * abs_h + 1e-15)


def test_value_is_even_in_k_and_meets_the_payoff_as_s_vanishes(correction):
    k = tf.constant(np.linspace(-DOMAIN.k_max, DOMAIN.k_max, 101))
    s = tf.fill([101], tf.constant(0.3, tf.float64))
    np.testing.assert_allclose(
        value(k, s, correction)[:, V],
        value(-k, s, correction)[:, V],
        rtol=1e-14,
    )
    # As s -> 0, v -> |sinh(k/2)|; at the money the time value left is s phi(0) ~ 0.4 s.
    tiny = tf.fill([101], tf.constant(1e-7, tf.float64))
    np.testing.assert_allclose(
        value(k, tiny, correction)[:, V], np.abs(np.sinh(k.numpy() / 2)), atol=0.4 * 1e-7
    )


def smooth_price(x, correction):
    """V = A v + sign (S' - D) / 2 written out again from the formula, without the clip."""
    is_put, spot, strike, tau, rate, volatility, q = tf.unstack(x, axis=1)
    spot_disc, strike_disc = spot * tf.exp(-q * tau), strike * tf.exp(-rate * tau)
    v = value(tf.math.log(spot_disc / strike_disc), volatility * tf.sqrt(tau), correction)[:, V]
    return tf.sqrt(spot_disc * strike_disc) * v + 0.5 * (1 - 2 * is_put) * (spot_disc - strike_disc)


def test_greeks_match_gradient_tape(correction):
    x = tf.constant(sample_inputs(np.random.default_rng(1), 4000))
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            price = smooth_price(x, correction)
        first = inner.gradient(price, x)
        delta = first[:, COLUMNS.index("spot")]
    gamma = outer.gradient(delta, x)[:, COLUMNS.index("spot")]
    column = {name: first[:, COLUMNS.index(name)].numpy() for name in COLUMNS}
    tape = {
        "price": price.numpy(),
        "delta": delta.numpy(),
        "gamma": gamma.numpy(),
        "theta": -column["tau"],
        "vega": column["volatility"],
        "rho": column["rate"],
    }
    out = price_and_greeks(x, correction)
    for name in ("delta", "gamma", "theta", "vega", "rho"):
        np.testing.assert_allclose(
            out[name].numpy(), tape[name], rtol=1e-8, atol=1e-10, err_msg=name
        )
    # The served price is the same function, computed from the time value with erfc's
    # Chebyshev fit (relative error 1.2e-7) and clipped to the no-arbitrage bounds.
    is_put, spot, strike, tau, rate, _, q = x.numpy().T
    spot_disc, strike_disc = spot * np.exp(-q * tau), strike * np.exp(-rate * tau)
    lower = np.maximum(np.where(is_put == 1, strike_disc - spot_disc, spot_disc - strike_disc), 0)
    upper = np.where(is_put == 1, strike_disc, spot_disc)
    inside = (tape["price"] > lower) & (tape["price"] < upper)  # this random network strays
    assert inside.mean() > 0.5
    error = np.abs(out["price"].numpy() - tape["price"])[inside] / strike[inside]
    assert error.max() < 1e-7


def test_put_call_parity_is_exact_by_construction(correction):
    x = sample_inputs(np.random.default_rng(2), 1000)
    calls, puts = x.copy(), x.copy()
    calls[:, 0], puts[:, 0] = 0.0, 1.0
    c = price_and_greeks(tf.constant(calls), correction)
    p = price_and_greeks(tf.constant(puts), correction)
    _, spot, strike, tau, rate, _, q = x.T
    inside = (c["price"].numpy() > 1e-9) & (p["price"].numpy() > 1e-9)
    parity = (c["price"] - p["price"]).numpy() - (
        spot * np.exp(-q * tau) - strike * np.exp(-rate * tau)
    )
    assert np.abs(parity[inside] / strike[inside]).max() < 1e-13
