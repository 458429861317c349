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
terms are differentiated in closed form (the table `TERMS`). tf2onnx cannot convert
TensorFlow's reverse-mode gradient graph of this function (it leaves BroadcastGradientArgs,
SqrtGrad, ReciprocalGrad and DynamicStitch nodes), while this form exports as plain
elementwise ops and matmuls. tests/test_pinn_network.py checks every derivative against
GradientTape.

Graph size. onnxruntime spends ~0.16 us per node however small the batch, and the server
prices one or two rows at a time, so the graph is written to have few nodes: every closed
-form term is a row of `TERMS`, all of them evaluated by matmuls of monomials z^a s^b
against constant coefficient matrices, and the Greeks are one more product of matrices.
289 nodes became 133: 35 us instead of 65 us per call at batch 1 (bench/pinn_latency.py),
at the price of more arithmetic per row at large batches (550 instead of 280 ns at 1024).

Everything here is dtype-generic: float64 for training, float32 for the exported graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from trainer.pinn.domain import DOMAIN


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


# Columns of the jet `value_jet` returns.
V, V_K, V_KK, V_S, TIME_VALUE = range(5)
JET_COLUMNS = 5

# Carriers: the non-polynomial factors of the terms. c = cosh(k/2), h = sinh(k/2),
# phi = phi(z), erf = erf(z / sqrt 2), erfc = erfc(|z| / sqrt 2); g1 = dg/d(k^2),
# g11 = d2g/d(k^2)2, gs = dg/ds.
# The network's carriers come in the column order of `_network_jet`.
ANALYTIC_CARRIERS = ("phi c", "phi h", "phi", "erf c", "erf h", "|h| erfc")
NETWORK_CARRIERS = ("phi g", "phi g1", "phi gs", "phi g11")

# v and its derivatives, term by term: (column, carrier, a, b, coefficient) stands for
# coefficient * carrier * z^a * s^b. Write C = s^3 P (1 + s^2 g) / 24 with P = phi (1 + 2 z^2)
# for the second-order term; then z_k = 1/s, z_s = -z/s, phi' = -z phi, g_k = 2 z s g1,
# g_kk = 2 g1 + 4 z^2 s^2 g11. The time value v - |h| replaces h erf by -|h| erfc exactly.
_SECOND_ORDER = {  # the terms of -C, shared by v and the time value
    ("phi", 0, 3): -1 / 24, ("phi", 2, 3): -2 / 24, ("phi g", 0, 5): -1 / 24, ("phi g", 2, 5): -2 / 24,
}  # fmt: skip
TERMS = (
    [(V, "phi c", 0, 1, 1.0), (V, "erf h", 0, 0, 1.0)]
    + [(V, carrier, a, b, w) for (carrier, a, b), w in _SECOND_ORDER.items()]
    + [(TIME_VALUE, "phi c", 0, 1, 1.0), (TIME_VALUE, "|h| erfc", 0, 0, -1.0)]
    + [(TIME_VALUE, carrier, a, b, w) for (carrier, a, b), w in _SECOND_ORDER.items()]
    + [  # v_k = h s phi / 2 - c z phi + c erf / 2 + 2 h phi / s - C_k
        (V_K, "phi h", 0, 1, 0.5), (V_K, "phi h", 0, -1, 2.0), (V_K, "phi c", 1, 0, -1.0),
        (V_K, "erf c", 0, 0, 0.5),
        (V_K, "phi", 1, 2, -3 / 24), (V_K, "phi", 3, 2, 2 / 24),
        (V_K, "phi g", 1, 4, -3 / 24), (V_K, "phi g", 3, 4, 2 / 24),
        (V_K, "phi g1", 1, 6, -2 / 24), (V_K, "phi g1", 3, 6, -4 / 24),
    ]
    + [  # v_kk = c phi (s / 4 + (1 + z^2) / s) - h z phi (1 + 2 / s^2) + h erf / 4 - C_kk
        (V_KK, "phi c", 0, 1, 0.25), (V_KK, "phi c", 0, -1, 1.0), (V_KK, "phi c", 2, -1, 1.0),
        (V_KK, "phi h", 1, 0, -1.0), (V_KK, "phi h", 1, -2, -2.0), (V_KK, "erf h", 0, 0, 0.25),
        (V_KK, "phi", 0, 1, -3 / 24), (V_KK, "phi", 2, 1, 9 / 24), (V_KK, "phi", 4, 1, -2 / 24),
        (V_KK, "phi g", 0, 3, -3 / 24), (V_KK, "phi g", 2, 3, 9 / 24),
        (V_KK, "phi g", 4, 3, -2 / 24),
        (V_KK, "phi g1", 0, 5, -2 / 24), (V_KK, "phi g1", 2, 5, -16 / 24),
        (V_KK, "phi g1", 4, 5, 8 / 24),
        (V_KK, "phi g11", 2, 7, -4 / 24), (V_KK, "phi g11", 4, 7, -8 / 24),
    ]
    + [  # v_s = c phi (1 + z^2) - 2 h z phi / s - C_s
        (V_S, "phi c", 0, 0, 1.0), (V_S, "phi c", 2, 0, 1.0), (V_S, "phi h", 1, -1, -2.0),
        (V_S, "phi", 0, 2, -3 / 24), (V_S, "phi", 2, 2, -3 / 24), (V_S, "phi", 4, 2, -2 / 24),
        (V_S, "phi g", 0, 4, -5 / 24), (V_S, "phi g", 2, 4, -7 / 24),
        (V_S, "phi g", 4, 4, -2 / 24),
        (V_S, "phi gs", 0, 5, -1 / 24), (V_S, "phi gs", 2, 5, -2 / 24),
    ]
)  # fmt: skip
assert {carrier for _, carrier, *_ in TERMS} == {*ANALYTIC_CARRIERS, *NETWORK_CARRIERS}
MONOMIALS = sorted({(a, b) for _, _, a, b, _ in TERMS})  # (a, b) of z^a s^b
Z_POWERS = range(max(a for a, _ in MONOMIALS) + 1)
S_POWERS = range(min(b for _, b in MONOMIALS), max(b for _, b in MONOMIALS) + 1)


def _power_picks() -> tuple[np.ndarray, np.ndarray]:
    """[powers, monomials] 0/1 matrices that pick each monomial's power of z and of s."""
    z_pick = np.zeros((len(Z_POWERS), len(MONOMIALS)))
    s_pick = np.zeros((len(S_POWERS), len(MONOMIALS)))
    for m, (a, b) in enumerate(MONOMIALS):
        z_pick[Z_POWERS.index(a), m] = s_pick[S_POWERS.index(b), m] = 1.0
    return z_pick, s_pick


def _sum_of_terms(carriers: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The constant matrices that evaluate the TERMS of these carriers.

    terms [monomials, carriers x columns] holds the coefficients; spread [carriers, carriers
    x columns] repeats each carrier once per column; total [carriers x columns, columns] sums
    the carriers of a column. Expanding and summing by matmul keeps onnxruntime off its slow
    broadcasting and reduction kernels (3x slower at batch 1024 when written that way).
    """
    terms = np.zeros((len(MONOMIALS), len(carriers) * JET_COLUMNS))
    for column, carrier, a, b, weight in TERMS:
        if carrier in carriers:
            terms[MONOMIALS.index((a, b)), carriers.index(carrier) * JET_COLUMNS + column] += weight
    spread = np.kron(np.eye(len(carriers)), np.ones((1, JET_COLUMNS)))
    total = np.tile(np.eye(JET_COLUMNS), (len(carriers), 1))
    return terms, spread, total


# erfc(x) for x >= 0 is t exp(-x^2 + sum_j ERFC_FIT[j] t^j) with t = 1 / (1 + x / 2), to a
# relative 1.2e-7 (Numerical Recipes' erfcc, a Chebyshev fit). ONNX has Erf but no Erfc, and
# 1 - erf(x) in float32 loses every digit of a far out-of-the-money time value: deep
# out-of-the-money prices came out as +-1e-7 S of noise, which broke convexity in strike.
ERFC_FIT = (
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
    0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277,
)  # fmt: skip


def _const(values: object, like: tf.Tensor) -> tf.Tensor:
    return tf.constant(np.asarray(values, dtype=np.float64), dtype=like.dtype)


def _input_scaling(like: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(scale, shift), [1, 2] each: (k^2, s) * scale + shift spans [-1, 1] over the domain."""
    s_low, s_high = DOMAIN.s_range
    scale = _const([[2.0 / DOMAIN.k_max**2, 2.0 / (s_high - s_low)]], like)
    return scale, _const([[-1.0, -2.0 * s_low / (s_high - s_low) - 1.0]], like)


def _network_jet(correction: keras.Model, k2: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
    """[N, 4]: g and its derivatives g1, gs, g11 in (k^2, s), for [N, 1] inputs.

    Forward mode: the tangents along k^2 and along s and the second tangent along k^2 are
    pushed through each layer. They stay three [N, width] tensors: stacked into one
    [3, N, width] tensor the exported graph had 10 fewer nodes, but TensorFlow's broadcasting
    ops made training 4x slower. The input scaling to [-1, 1] is folded into the first
    layer's weights, so the first layer's tangents are constants.
    """
    scale, shift = _input_scaling(k2)
    h = tf.concat([k2, s], axis=1)
    t1, t2, t11 = _const([[1.0, 0.0]], k2), _const([[0.0, 1.0]], k2), None  # t11 = 0
    for i, layer in enumerate(correction.layers):
        kernel, bias = layer.kernel, layer.bias
        if i == 0:
            kernel, bias = tf.transpose(scale) * kernel, bias + tf.matmul(shift, kernel)[0]
        h = tf.matmul(h, kernel) + bias
        t1, t2 = tf.matmul(t1, kernel), tf.matmul(t2, kernel)
        t11 = None if t11 is None else tf.matmul(t11, kernel)
        if layer.activation is keras.activations.tanh:
            h = tf.tanh(h)
            slope = 1.0 - h * h
            # tanh'' = -2 tanh tanh'
            curvature = -2.0 * h * slope * t1 * t1
            t11 = curvature if t11 is None else slope * t11 + curvature
            t1, t2 = slope * t1, slope * t2
        elif layer.activation is not keras.activations.linear:
            raise ValueError(f"no forward-mode rule for activation {layer.activation.__name__}")
    return tf.concat([h, t1, t2, t11], axis=1)


@dataclass(frozen=True)
class AnalyticJet:
    """Everything of the jet at some (k, s) that does not depend on the network's weights.

    Training evaluates the jet at fixed points hundreds of times with new weights; it
    computes this part once.
    """

    k: tf.Tensor  # [N, 1]
    s: tf.Tensor  # [N, 1]
    fixed: tf.Tensor  # [N, JET_COLUMNS]: the sum of the terms of ANALYTIC_CARRIERS
    network_terms: tf.Tensor  # [N, 4 * JET_COLUMNS]: phi times the polynomials of g, g1, gs, g11


def analytic_jet(k: tf.Tensor, s: tf.Tensor) -> AnalyticJet:
    """The network-free part of `value_jet`, for k and s of shape [N, 1]."""
    z = k / s
    minus_half_z2 = -0.5 * z * z
    phi = tf.exp(minus_half_z2 - 0.5 * math.log(2.0 * math.pi))
    erf = tf.math.erf(z * (1.0 / math.sqrt(2.0)))
    # sinh itself, not a difference of exponentials: h multiplies terms of v_kk that nearly
    # cancel at small s, and e^(k/2) - e^(-k/2) keeps only an absolute 1e-7 in float32.
    ch = tf.concat([tf.cosh(0.5 * k), tf.sinh(0.5 * k)], axis=1)
    t = 1.0 / (1.0 + tf.abs(z) * (0.5 / math.sqrt(2.0)))
    fit = tf.matmul(
        tf.pow(t, _const([range(len(ERFC_FIT))], k)), _const([ERFC_FIT], k), transpose_b=True
    )
    abs_h_erfc = tf.abs(ch[:, 1:]) * t * tf.exp(minus_half_z2 + fit)
    carriers = tf.concat([phi * ch, phi, erf * ch, abs_h_erfc], axis=1)  # ANALYTIC_CARRIERS

    z_pick, s_pick = (_const(m, k) for m in _power_picks())
    # pow, not exp(b ln s): ~1 ulp each.
    monomials = tf.matmul(tf.pow(z, _const([Z_POWERS], k)), z_pick) * tf.matmul(
        tf.pow(s, _const([S_POWERS], k)), s_pick
    )
    terms, spread, total = (_const(m, k) for m in _sum_of_terms(ANALYTIC_CARRIERS))
    fixed = tf.matmul(tf.matmul(monomials, terms) * tf.matmul(carriers, spread), total)
    network_terms = phi * tf.matmul(monomials, _const(_sum_of_terms(NETWORK_CARRIERS)[0], k))
    return AnalyticJet(k, s, fixed, network_terms)


def jet_with_network(analytic: AnalyticJet, correction: keras.Model) -> tf.Tensor:
    """[N, JET_COLUMNS]: v(k, s) of the module docstring, v_k, v_kk, v_s and the time value
    v - |sinh(k/2)| (computed without cancellation)."""
    g = _network_jet(correction, analytic.k * analytic.k, analytic.s)
    _, spread, total = (_const(m, g) for m in _sum_of_terms(NETWORK_CARRIERS))
    return analytic.fixed + tf.matmul(analytic.network_terms * tf.matmul(g, spread), total)


def value_with_network(analytic: AnalyticJet, correction: keras.Model) -> tf.Tensor:
    """[N]: v alone, which depends on g but not on its derivatives: no tangents, and a
    gradient 5x cheaper than the whole jet's, for the loss terms on v."""
    scale, shift = _input_scaling(analytic.k)
    g = correction(tf.concat([analytic.k * analytic.k, analytic.s], axis=1) * scale + shift)
    phi_g = NETWORK_CARRIERS.index("phi g") * JET_COLUMNS + V
    return analytic.fixed[:, V] + analytic.network_terms[:, phi_g] * g[:, 0]


def value_jet(k: tf.Tensor, s: tf.Tensor, correction: keras.Model) -> tf.Tensor:
    """`jet_with_network` at (k, s), each of shape [N, 1]."""
    return jet_with_network(analytic_jet(k, s), correction)


# The Greeks, by the chain rule through k_S = 1/S, k_tau = r - q, k_r = tau, s_sigma =
# sqrt(tau), s_tau = sigma / (2 sqrt(tau)), and ln A, which moves by 1/(2S) in S, -(r + q)/2
# in tau and -tau/2 in r:
#   delta = A/S (v/2 + v_k) + sign e^(-q tau) / 2
#   gamma = A/S^2 (v_kk - v/4)
#   theta = A r (v/2 - v_k) + A q (v/2 + v_k) - A sigma / sqrt(tau) v_s / 2 - sign (r D - q S') / 2
#   vega  = A sqrt(tau) v_s
#   rho   = -A tau (v/2 - v_k) + sign tau D / 2
# One row per product: (greek, weight, combination of the jet's columns and `sign`, factor).
GREEKS = ("delta", "gamma", "theta", "vega", "rho")
SIGN = JET_COLUMNS  # the column appended to the jet
GREEK_TERMS = (
    ("delta", 1.0, {V: 0.5, V_K: 1.0}, "A/S"),
    ("delta", 0.5, {SIGN: 1.0}, "e^-q tau"),
    ("gamma", 1.0, {V_KK: 1.0, V: -0.25}, "A/S^2"),
    ("theta", 1.0, {V: 0.5, V_K: -1.0}, "A r"),
    ("theta", 1.0, {V: 0.5, V_K: 1.0}, "A q"),
    ("theta", -0.5, {V_S: 1.0}, "A sigma/sqrt tau"),
    ("theta", -0.5, {SIGN: 1.0}, "D r"),
    ("theta", 0.5, {SIGN: 1.0}, "S' q"),
    ("vega", 1.0, {V_S: 1.0}, "A sqrt tau"),
    ("rho", -1.0, {V: 0.5, V_K: -1.0}, "A tau"),
    ("rho", 0.5, {SIGN: 1.0}, "tau D"),
)

# Factors are positive monomials of the inputs, all from one exp of a linear map of their
# logs (and of r tau, q tau), some then multiplied by the rate or the dividend yield.
_LOGS = {"ln S": 1, "ln K": 2, "ln tau": 3, "ln sigma": 5, "r tau": 7 + 4, "q tau": 7 + 6}
_A = {"ln S": 0.5, "ln K": 0.5, "r tau": -0.5, "q tau": -0.5}  # A = sqrt(S e^(-q tau) K e^(-r tau))
_MARKET = {  # the first factors, for the network's inputs
    "e^-q tau": {"q tau": -1.0},
    "e^-r tau": {"r tau": -1.0},
    "s": {"ln sigma": 1.0, "ln tau": 0.5},
}
_FACTORS = {  # name -> (exponents of the logs, multiplied by which input column)
    "A/S": (_A | {"ln S": -0.5}, None),
    "A/S^2": (_A | {"ln S": -1.5}, None),
    "A r": (_A, 4),
    "A q": (_A, 6),
    "A sigma/sqrt tau": (_A | {"ln sigma": 1.0, "ln tau": -0.5}, None),
    "A sqrt tau": (_A | {"ln tau": 0.5}, None),
    "A tau": (_A | {"ln tau": 1.0}, None),
    "e^-q tau": ({"q tau": -1.0}, None),
    "D r": ({"ln K": 1.0, "r tau": -1.0}, 4),
    "S' q": ({"ln S": 1.0, "q tau": -1.0}, 6),
    "tau D": ({"ln tau": 1.0, "ln K": 1.0, "r tau": -1.0}, None),
}
_SMALLEST = 1e-30  # keeps the logs of columns that are not used (rate, yield, is_put) finite


def _greek_matrices() -> tuple[np.ndarray, ...]:
    """Log-exponent [14, 3 + T], multiplier [7, T] with offset [T], combination [6, T], sum [T, 5]."""
    terms = len(GREEK_TERMS)
    exponents = np.zeros((14, len(_MARKET) + terms))
    multiplier, offset = np.zeros((7, terms)), np.ones(terms)
    combination, total = np.zeros((JET_COLUMNS + 1, terms)), np.zeros((terms, len(GREEKS)))
    for j, powers in enumerate(_MARKET.values()):
        for name, power in powers.items():
            exponents[_LOGS[name], j] = power
    for j, (greek, weight, jet, factor) in enumerate(GREEK_TERMS):
        powers, column = _FACTORS[factor]
        for name, power in powers.items():
            exponents[_LOGS[name], len(_MARKET) + j] = power
        if column is not None:
            multiplier[column, j], offset[j] = 1.0, 0.0
        for jet_column, w in jet.items():
            combination[jet_column, j] = w
        total[j, GREEKS.index(greek)] = weight
    return exponents, multiplier, offset, combination, total


def price_and_greeks(x: tf.Tensor, correction: keras.Model) -> dict[str, tf.Tensor]:
    """Price and Greeks of the rows of x (the ONNX input columns, domain.COLUMNS).

    The price is clipped to the European no-arbitrage bounds; the clip moves it by no more
    than the network's error, and the Greeks are left as the network's.
    """
    exponents, multiplier, offset, combination, total = (_const(m, x) for m in _greek_matrices())
    is_put, tau = x[:, :1], x[:, 3:4]
    logs = tf.concat([tf.math.log(tf.maximum(x, _SMALLEST)), x * tau], axis=1)
    factors = tf.exp(tf.matmul(logs, exponents))
    # S' and D, multiplied out rather than taken from the logs: the price's float32 noise in
    # strike must stay below a few ulps of S, or convexity checks fail.
    discounted = x[:, 1:3] * factors[:, :2]
    spot_disc, strike_disc = discounted[:, :1], discounted[:, 1:]
    jet = value_jet(tf.math.log(spot_disc / strike_disc), factors[:, 2:3], correction)

    # A |sinh(k/2)| = |S' - D| / 2, so V = A v + sign (S' - D) / 2 = A (time value) + intrinsic:
    # out-of-the-money prices then carry float32's relative precision, not that of S.
    amplitude = tf.sqrt(spot_disc * strike_disc)
    sign = 1.0 - 2.0 * is_put
    forward_gap = spot_disc - strike_disc
    intrinsic = tf.maximum(sign * forward_gap, 0.0)
    upper = spot_disc - is_put * forward_gap  # D for a put, S' for a call
    price = tf.minimum(intrinsic + amplitude * tf.maximum(jet[:, TIME_VALUE:], 0.0), upper)

    products = (
        tf.matmul(tf.concat([jet, sign], axis=1), combination)
        * factors[:, 3:]
        * (tf.matmul(x, multiplier) + offset)
    )
    columns = tf.concat([price, tf.matmul(products, total)], axis=1)
    # One [6 N] vector split in six: fewer graph nodes than six column slices.
    outputs = tf.split(tf.reshape(tf.transpose(columns), [-1]), 1 + len(GREEKS))
    return dict(zip(("price", *GREEKS), outputs, strict=True))
