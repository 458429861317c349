"""The PINN: an analytic small-volatility expansion plus a small network that learns the rest.

Black-Scholes prices depend on five inputs, but in forward variables only on two:
k = ln(F/K) with F = S e^((r - q) tau), and total volatility s = sigma sqrt(tau). With the
discounted strike D = K e^(-r tau), the discounted spot S' = S e^(-q tau) = D e^k and
A = sqrt(S' D),

    V = A v(k, s) + sign (S' - D) / 2,        sign = +1 for a call, -1 for a put

where v is the same for calls and puts (so put-call parity holds exactly) and even in k.
v solves the PDE v_s = s (v_kk - v / 4) with v(k, 0) = |sinh(k / 2)|. We write

    v = cosh(k/2) s phi(z) + sinh(k/2) erf(z / sqrt 2)  -  s^3 phi(z) (1 + 2 z^2) (1 + s^2 g) / 24

with z = k / s: a Bachelier-type term and its next order in s, both exact as s -> 0 (so
the terminal payoff holds by construction), and g = MLP(k^2, s), the trained network. The
input k^2 keeps v exactly even in k; the factor s^2 leaves g smooth and O(1). Neither
N(d1) nor N(d2) appears anywhere.

Derivatives. The Greeks and the PDE residual need v_k, v_kk and v_s. They are computed in
forward mode: the network's tangents are pushed through its Dense layers, and the analytic
terms are differentiated in closed form below. tf2onnx cannot convert TensorFlow's reverse
-mode gradient graph of this function (it leaves BroadcastGradientArgs, SqrtGrad,
ReciprocalGrad and DynamicStitch nodes), while this form exports as plain elementwise ops
and matmuls. tests/test_pinn_network.py checks every derivative against GradientTape.

Everything here is dtype-generic: float64 for training, float32 for the exported graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import tensorflow as tf

from trainer.pinn.domain import DOMAIN

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


@dataclass(frozen=True)
class NetworkShape:
    width: int = 32
    depth: int = 3


def build_correction(shape: NetworkShape, dtype: str = "float64", seed: int = 0) -> keras.Model:
    """The trained part g: (k^2, s) scaled to [-1, 1] -> 1, a tanh MLP (tanh is fast in onnxruntime)."""
    init = keras.initializers.GlorotUniform
    layers = [keras.Input(shape=(2,), dtype=dtype)]
    layers += [
        keras.layers.Dense(
            shape.width, activation="tanh", kernel_initializer=init(seed + i), dtype=dtype
        )
        for i in range(shape.depth)
    ]
    layers.append(keras.layers.Dense(1, kernel_initializer=init(seed + shape.depth), dtype=dtype))
    return keras.Sequential(layers, name="pinn_correction")


@dataclass(frozen=True)
class Jet:
    """A function of (k, s) with the derivatives the Greeks need."""

    value: tf.Tensor
    d_k: tf.Tensor
    d_kk: tf.Tensor
    d_s: tf.Tensor


@dataclass(frozen=True)
class SymmetricValue(Jet):
    """v with its time value v - |sinh(k/2)|, computed without cancellation (see `_erfc`)."""

    time_value: tf.Tensor


def _erfc(x: tf.Tensor) -> tf.Tensor:
    """erfc(x) for x >= 0 to a relative 1.2e-7 (Numerical Recipes' erfcc, a Chebyshev fit).

    ONNX has Erf but no Erfc, and 1 - erf(x) in float32 loses every digit of a far
    out-of-the-money time value: deep out-of-the-money prices came out as +-1e-7 S of noise,
    which broke convexity in strike.
    """
    t = 1.0 / (1.0 + 0.5 * x)
    poly = 0.17087277
    for c in (
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
    ):
        poly = c + t * poly
    return t * tf.exp(-x * x - 1.26551223 + t * poly)


def _network_jet(correction: keras.Model, k: tf.Tensor, s: tf.Tensor) -> Jet:
    """g and its derivatives, by pushing tangents through the Dense layers in forward mode."""
    s_low, s_high = DOMAIN.s_range
    a, b = 2.0 / DOMAIN.k_max**2, 2.0 / (s_high - s_low)
    h = tf.stack([a * k * k - 1.0, b * (s - s_low) - 1.0], axis=1)
    zeros, ones = tf.zeros_like(k), tf.ones_like(k)
    # Tangents along the first input (k^2 feature), its second derivative, and along s.
    t1 = tf.stack([ones, zeros], axis=1)
    t11 = tf.zeros_like(h)
    t2 = tf.stack([zeros, ones], axis=1)
    for layer in correction.layers:
        h = tf.matmul(h, layer.kernel) + layer.bias
        t1, t11, t2 = (tf.matmul(t, layer.kernel) for t in (t1, t11, t2))
        if layer.activation is keras.activations.tanh:
            h = tf.tanh(h)
            slope = 1.0 - h * h
            t11 = slope * t11 - 2.0 * h * slope * t1 * t1
            t1, t2 = slope * t1, slope * t2
        elif layer.activation is not keras.activations.linear:
            raise ValueError(f"no forward-mode rule for activation {layer.activation.__name__}")
    g, g1, g11, g2 = h[:, 0], t1[:, 0], t11[:, 0], t2[:, 0]
    # Chain rule through the input scaling f1 = a k^2 - 1, f2 = b (s - s_low) - 1.
    return Jet(g, g1 * 2.0 * a * k, g11 * (2.0 * a * k) ** 2 + g1 * 2.0 * a, g2 * b)


def symmetric_value(k: tf.Tensor, s: tf.Tensor, correction: keras.Model) -> SymmetricValue:
    """v(k, s) of the module docstring, its derivatives and time value, for 1-D tensors."""
    z = k / s
    half = tf.exp(0.5 * k)
    c, h = 0.5 * (half + 1.0 / half), 0.5 * (half - 1.0 / half)  # cosh(k/2), sinh(k/2)
    phi = _INV_SQRT_2PI * tf.exp(-0.5 * z * z)
    erf = tf.math.erf(z * _INV_SQRT_2)
    z2 = z * z

    # Bachelier-type term B = c s phi + h erf; z_k = 1/s, z_s = -z/s, phi' = -z phi, erf' = 2 phi.
    b = c * s * phi + h * erf
    b_k = 0.5 * h * s * phi - c * z * phi + 0.5 * c * erf + 2.0 * h * phi / s
    b_kk = (
        0.25 * s * c * phi
        - h * z * phi
        + 0.25 * h * erf
        + c * phi * (1.0 + z2) / s
        - 2.0 * h * z * phi / (s * s)
    )
    b_s = phi * (c * (1.0 + z2) - 2.0 * h * z / s)

    # Second-order term C = s^3 P(z) (1 + s^2 g) / 24 with P = phi (1 + 2 z^2).
    g = _network_jet(correction, k, s)
    p = phi * (1.0 + 2.0 * z2)
    p_z = phi * z * (3.0 - 2.0 * z2)
    p_zz = phi * (2.0 * z2 * z2 - 9.0 * z2 + 3.0)
    s2 = s * s
    q = 1.0 + s2 * g.value
    cc = s2 * s * p * q / 24.0
    cc_k = (s2 * p_z * q + s2 * s2 * s * p * g.d_k) / 24.0
    cc_kk = (s * p_zz * q + 2.0 * s2 * s2 * p_z * g.d_k + s2 * s2 * s * p * g.d_kk) / 24.0
    cc_s = (
        s2 * (3.0 * p - z * p_z) + s2 * s2 * g.value * (5.0 * p - z * p_z) + s2 * s2 * s * p * g.d_s
    ) / 24.0
    # The time value v - |h|: h erf(z/sqrt 2) - |h| = -|h| erfc(|z|/sqrt 2) exactly.
    time_value = c * s * phi - tf.abs(h) * _erfc(tf.abs(z) * _INV_SQRT_2) - cc
    return SymmetricValue(b - cc, b_k - cc_k, b_kk - cc_kk, b_s - cc_s, time_value)


def price_and_greeks(x: tf.Tensor, correction: keras.Model) -> dict[str, tf.Tensor]:
    """Price and Greeks of the rows of x (the ONNX input columns, domain.COLUMNS).

    The price is clipped to the European no-arbitrage bounds; the clip moves it by no more
    than the network's error, and the Greeks are left as the network's.
    """
    is_put, spot, strike, tau, rate, volatility, dividend_yield = tf.unstack(x, axis=1)
    sqrt_tau = tf.sqrt(tau)
    strike_disc = strike * tf.exp(-rate * tau)
    spot_disc = spot * tf.exp(-dividend_yield * tau)
    k = tf.math.log(spot_disc / strike_disc)
    s = volatility * sqrt_tau
    v = symmetric_value(k, s, correction)
    amplitude = tf.sqrt(spot_disc * strike_disc)
    sign = 1.0 - 2.0 * is_put
    forward_value = sign * (spot_disc - strike_disc)

    # A |sinh(k/2)| = |S' - D| / 2, so V = A v + sign (S' - D) / 2 = A (time value) + intrinsic:
    # out-of-the-money prices then carry float32's relative precision, not that of S.
    price = amplitude * v.time_value + tf.maximum(forward_value, 0.0)
    # Through k_S = 1/S, k_tau = r - q, k_r = tau; s_sigma = sqrt(tau), s_tau = sigma / (2 sqrt(tau));
    # ln A moves by 1/(2S) in S, -(r + q)/2 in tau and -tau/2 in r.
    delta = amplitude * (0.5 * v.value + v.d_k) / spot + 0.5 * sign * tf.exp(-dividend_yield * tau)
    gamma = amplitude * (v.d_kk - 0.25 * v.value) / (spot * spot)
    dv_dtau = (
        -0.5 * (rate + dividend_yield) * v.value
        + (rate - dividend_yield) * v.d_k
        + 0.5 * volatility / sqrt_tau * v.d_s
    )
    theta = -(amplitude * dv_dtau + 0.5 * sign * (rate * strike_disc - dividend_yield * spot_disc))
    vega = amplitude * sqrt_tau * v.d_s
    rho = amplitude * tau * (v.d_k - 0.5 * v.value) + 0.5 * sign * tau * strike_disc

    lower = tf.maximum(forward_value, 0.0)
    upper = is_put * strike_disc + (1.0 - is_put) * spot_disc
    price = tf.minimum(tf.maximum(price, lower), upper)
    return {
        "price": price,
        "delta": delta,
        "gamma": gamma,
        "theta": theta,
        "vega": vega,
        "rho": rho,
    }
