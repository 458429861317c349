"""Analytic Black-Scholes-Merton prices and Greeks of European options, vectorised in numpy.

The float64 reference the PINN is trained and judged against. Conventions follow the API
(proto/pricing/v1/pricing.proto): theta is dV/dt per year of calendar time (= -dV/dtau),
vega per 1.00 of volatility, rho per 1.00 of rate; the dividend yield q is continuous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from shared.validation import FINITE, POSITIVE, OneOf, check_columns

Array = NDArray[np.float64]

ALLOWED_INPUTS = {
    "is_put": OneOf((0.0, 1.0), ("0 (call)", "1 (put)")),
    "spot": POSITIVE,
    "strike": POSITIVE,
    "tau": POSITIVE,
    "rate": FINITE,
    "volatility": POSITIVE,
    "dividend_yield": FINITE,
}

# Past |d| = 40 the normal CDF is exactly 0 or 1 in float64 and the density underflows to 0,
# so clipping d there changes no result while keeping infinities out of the arithmetic.
_D_LIMIT = 40.0
_MIN_TOTAL_VOL = 1e-150
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Quote:
    """Price and Greeks, one entry per option."""

    price: Array
    delta: Array
    gamma: Array
    theta: Array
    vega: Array
    rho: Array


def black_scholes(
    is_put: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    tau: ArrayLike,
    rate: ArrayLike,
    volatility: ArrayLike,
    dividend_yield: ArrayLike = 0.0,
) -> Quote:
    """Price and Greeks for calls (is_put = 0) and puts (is_put = 1); inputs broadcast together.

    Raises shared.validation.InvalidInputError naming the first bad field and row.
    """
    columns = np.broadcast_arrays(
        *(
            np.asarray(c, dtype=np.float64)
            for c in (is_put, spot, strike, tau, rate, volatility, dividend_yield)
        )
    )
    check_columns(dict(zip(ALLOWED_INPUTS, columns, strict=True)), ALLOWED_INPUTS)
    put, s, k, t, r, sigma, q = (np.atleast_1d(c) for c in columns)

    sqrt_t = np.sqrt(t)
    # As sigma or tau -> 0, d runs to +-inf and, at the money, gamma to a Dirac spike. No
    # price can tell a total volatility of 1e-150 from a smaller one, so flooring it there
    # keeps every output finite; d may still overflow for absurd rates, and the clip below
    # turns that infinity into the exact limit.
    total_vol = np.maximum(sigma * sqrt_t, _MIN_TOTAL_VOL)
    with np.errstate(over="ignore"):
        d1 = (np.log(s / k) + (r - q) * t) / total_vol + 0.5 * total_vol
    d1 = np.clip(d1, -_D_LIMIT, _D_LIMIT)
    d2 = np.clip(d1 - total_vol, -_D_LIMIT, _D_LIMIT)

    # Calls use N(d), puts N(-d) with the sign flipped: one formula for both.
    sign = 1.0 - 2.0 * put
    dividend_disc = np.exp(-q * t)
    spot_disc = s * dividend_disc
    strike_disc = k * np.exp(-r * t)
    n_d1 = ndtr(sign * d1)
    n_d2 = ndtr(sign * d2)
    density = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)

    price = sign * (spot_disc * n_d1 - strike_disc * n_d2)
    delta = sign * dividend_disc * n_d1
    gamma = dividend_disc * density / (s * total_vol)
    vega = spot_disc * density * sqrt_t
    theta = -spot_disc * density * sigma / (2.0 * sqrt_t) + sign * (
        q * spot_disc * n_d1 - r * strike_disc * n_d2
    )
    rho = sign * t * strike_disc * n_d2
    return Quote(price=price, delta=delta, gamma=gamma, theta=theta, vega=vega, rho=rho)
