"""A quote: what one PriceOption inference answers for a contract, its call and its put.

One inference prices both option types of a contract (spot, strike, tau, rate, volatility,
dividend yield), and both are kept together: the call's then the put's price and five
Greeks, 12 little-endian doubles. Those 96 bytes are the value the caches keep, in process
and in Redis, as they are (a full 100,000-entry in-process cache, keys included, takes
~50 MB; as lists of floats ~90 MB). A reply unpacks its six numbers from them, no numpy.
"""

from __future__ import annotations

import struct

import numpy as np

Contract = tuple[float, ...]  # spot, strike, tau, rate, volatility, dividend_yield
Quote = bytes
OPTION_TYPES = (0.0, 1.0)  # the is_put column of a contract's two rows: call, then put
HALF = struct.Struct("<6d")  # one option type's half of a quote, in OUTPUTS order
QUOTE = struct.Struct("<12d")


def quote_half(quote: Quote, is_put: float) -> tuple[float, ...]:
    """(price, delta, gamma, theta, vega, rho) of the call (is_put 0) or the put (1)."""
    return HALF.unpack_from(quote, HALF.size * int(is_put))


def contract_rows(contracts: list[Contract]) -> np.ndarray:
    """The model's input rows [2 len(contracts), 7]: each contract's call, then its put."""
    return np.array([(is_put, *c) for c in contracts for is_put in OPTION_TYPES])


def quotes_of(outputs: np.ndarray) -> list[Quote]:
    """The quotes of a model run's outputs [6, 2 n] over `contract_rows` of n contracts."""
    joined = outputs.T.astype("<f8").tobytes()
    return [joined[i : i + QUOTE.size] for i in range(0, len(joined), QUOTE.size)]
