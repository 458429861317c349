"""Where the PINN is trained and served (DESIGN.md section 4), and how points are drawn from it.

Served inputs are the seven columns of the ONNX contract. The network itself lives in two
variables, forward log-moneyness k = ln(S/K) + (r - q) tau and total volatility
s = sigma sqrt(tau): the box below holds every (|k|, s) the served domain can produce.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Domain:
    """Closed ranges of the served inputs; anything outside is refused, never extrapolated."""

    moneyness: tuple[float, float] = (0.5, 2.0)  # spot / strike
    tau: tuple[float, float] = (1 / 365, 3.0)
    volatility: tuple[float, float] = (0.05, 1.0)
    rate: tuple[float, float] = (-0.01, 0.10)
    dividend_yield: tuple[float, float] = (0.0, 0.05)

    @property
    def k_max(self) -> float:
        """Largest |k| = |ln(S/K) + (r - q) tau| over the domain."""
        drift_low = (self.rate[0] - self.dividend_yield[1]) * self.tau[1]
        drift_high = (self.rate[1] - self.dividend_yield[0]) * self.tau[1]
        return max(
            -math.log(self.moneyness[0]) - drift_low, math.log(self.moneyness[1]) + drift_high
        )

    @property
    def s_range(self) -> tuple[float, float]:
        """Smallest and largest total volatility sigma sqrt(tau)."""
        return (
            self.volatility[0] * math.sqrt(self.tau[0]),
            self.volatility[1] * math.sqrt(self.tau[1]),
        )

    def as_meta(self) -> dict[str, list[float]]:
        return {name: list(bounds) for name, bounds in asdict(self).items()}


DOMAIN = Domain()


def sample_inputs(rng: np.random.Generator, n: int, domain: Domain = DOMAIN) -> np.ndarray:
    """n rows of the ONNX input, uniform over the domain, strikes spread over 50-150."""
    strike = rng.uniform(50.0, 150.0, n)
    return np.stack(
        [
            rng.integers(0, 2, n).astype(np.float64),
            strike * rng.uniform(*domain.moneyness, n),
            strike,
            rng.uniform(*domain.tau, n),
            rng.uniform(*domain.rate, n),
            rng.uniform(*domain.volatility, n),
            rng.uniform(*domain.dividend_yield, n),
        ],
        axis=1,
    )


def edge_grid(points_per_axis: int = 7, domain: Domain = DOMAIN) -> np.ndarray:
    """A full grid over the five ranges, corners and edges included, for calls and puts (K = 100)."""
    axes = [
        np.linspace(*bounds, points_per_axis)
        for bounds in (
            domain.moneyness,
            domain.tau,
            domain.rate,
            domain.volatility,
            domain.dividend_yield,
        )
    ]
    rows = [
        (is_put, 100.0 * m, 100.0, t, r, v, q)
        for is_put in (0.0, 1.0)
        for m, t, r, v, q in itertools.product(*axes)
    ]
    return np.array(rows, dtype=np.float64)


def to_ks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The network's variables (k, s) of rows of the ONNX input."""
    _, spot, strike, tau, rate, volatility, dividend_yield = x.T
    return np.log(spot / strike) + (rate - dividend_yield) * tau, volatility * np.sqrt(tau)
